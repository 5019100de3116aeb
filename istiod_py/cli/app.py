"""The `istiod-py` parser: one module per subcommand group, each with `register(sub)`.

To add a group, write `istiod_py/cli/<group>.py` with `register(sub: SubParsers)`
whose parsers `set_defaults(func=handler)` (handler: Namespace -> exit code) and
list it in GROUPS. Operator groups: proxy_status, proxy_config, describe, analyze
(they read the debug port and Envoy admin through istiod_py.debug.client). Planned:
`install` (install, manifest), `inject` (kube-inject), `preview` (preview, status).
A group imports only `istiod_py.cli.common` from this package and does its heavy
imports inside handlers, so `istiod-py --help` stays fast and imports stay acyclic."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from istiod_py.cli import (
    analyze,
    capture,
    describe,
    inject,
    install,
    node,
    proxy_config,
    proxy_status,
    serve,
    validate,
    version,
    workload,
)
from istiod_py.cli.common import EXIT_CODES_HELP, CliError

GROUPS = (
    serve,
    workload,
    capture,
    inject,
    install,
    node,
    validate,
    analyze,
    version,
    proxy_status,
    proxy_config,
    describe,
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="istiod-py", description="An Istio-style control plane in Python.", epilog=EXIT_CODES_HELP
    )
    sub = p.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        rc: int = args.func(args)
    except CliError as e:
        print(f"istiod-py: error: {e}", file=sys.stderr)
        return int(e.code)
    except KeyboardInterrupt:
        return 130
    return int(rc)
