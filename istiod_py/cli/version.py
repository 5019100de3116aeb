"""`istiod-py version`: this client's version."""

from __future__ import annotations

import argparse
from typing import Any

from istiod_py.cli.common import EXIT_CODES_HELP, ExitCode, SubParsers, add_output_flag, emit


def client_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("istiod_py")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def register(sub: SubParsers) -> None:
    p = sub.add_parser("version", help="print the version", epilog=EXIT_CODES_HELP)
    add_output_flag(p)
    p.set_defaults(func=run_version)


def run_version(args: argparse.Namespace) -> int:
    report: dict[str, Any] = {"client": {"version": client_version()}}
    emit(report, args.output, lambda r: [["client version", r["client"]["version"]]])
    return ExitCode.OK
