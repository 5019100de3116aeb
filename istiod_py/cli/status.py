"""`istiod-py status [KIND/NS/NAME]`: how far a config has propagated, exactly,
from the proxies' ACKs (the control plane's /debug/statusz): which proxies it
affects and how many hold an ACKed version containing its current content.

With `--wait` it returns when the config (or, without one, every config) is
live on every proxy it affects, or fails after `--timeout` seconds naming the
proxies still pending, so a CI/CD pipeline can gate on a change being live."""

from __future__ import annotations

import argparse
import contextlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from istiod_py.cli.common import EXIT_CODES_HELP, CliError, ExitCode, SubParsers, add_output_flag, emit


def register(sub: SubParsers) -> None:
    p = sub.add_parser(
        "status",
        help="which proxies hold a config's current content (from their ACKs); --wait to gate on it",
        description=__doc__,
        epilog=EXIT_CODES_HELP,
    )
    p.add_argument(
        "resource",
        nargs="?",
        default="",
        metavar="KIND/NS/NAME",
        help="e.g. VirtualService/default/reviews (default: every config)",
    )
    p.add_argument(
        "--debug-address",
        default="127.0.0.1:15014",
        metavar="HOST:PORT",
        help="the control plane's debug HTTP (serve --debug-port; default 127.0.0.1:15014)",
    )
    p.add_argument("--wait", action="store_true", help="wait until live on every affected proxy")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds --wait waits (default 30)")
    p.add_argument("--interval", type=float, default=0.2, help=argparse.SUPPRESS)
    add_output_flag(p)
    p.set_defaults(func=run_status)


def fetch(base: str, resource: str, timeout: float = 5.0) -> dict[str, Any]:
    query = "?" + urllib.parse.urlencode({"resource": resource}) if resource else ""
    url = f"{base}/debug/statusz{query}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return dict(json.loads(r.read()))
    except urllib.error.HTTPError as e:
        detail = ""
        with contextlib.suppress(ValueError, OSError):
            detail = json.loads(e.read()).get("error", "")
        if e.code == 404 and detail:
            raise CliError(detail, ExitCode.FAILED) from None
        raise CliError(f"{url}: HTTP {e.code}; is this an istiod-py debug port?", ExitCode.UNAVAILABLE) from None
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise CliError(f"{url}: control plane not reachable: {reason}", ExitCode.UNAVAILABLE) from None


def _pending(report: dict[str, Any]) -> dict[str, list[str]]:
    return {ref: r["pending"] for ref, r in report["resources"].items() if r["pending"]}


def run_status(args: argparse.Namespace) -> int:
    base = args.debug_address if "://" in args.debug_address else f"http://{args.debug_address}"
    deadline = time.monotonic() + args.timeout
    report = fetch(base, args.resource)
    while args.wait and _pending(report) and time.monotonic() < deadline:
        time.sleep(args.interval)
        report = fetch(base, args.resource)
    emit(report, args.output, _table)
    late = _pending(report)
    if args.wait and late:
        names = "; ".join(f"{ref}: {', '.join(p)}" for ref, p in sorted(late.items()))
        raise CliError(f"not live everywhere after {args.timeout:g}s; pending: {names}", ExitCode.FAILED)
    return ExitCode.OK


def _table(report: dict[str, Any]) -> list[list[str]]:
    rows = [["RESOURCE", "CONTENT", "LIVE", "PENDING"]]
    for ref, r in report["resources"].items():
        kind, _, rest = ref.partition("/")
        pending = ", ".join(r["pending"][:5]) + (f" (+{len(r['pending']) - 5})" if len(r["pending"]) > 5 else "")
        rows.append([f"{kind} {rest}", r["generation"] or "(deleted)", f"{r['live']} of {r['proxies']}", pending])
    return rows
