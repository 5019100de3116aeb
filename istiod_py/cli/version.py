"""`istiod-py version`: this client's version and, with `--debug-address`, the
control plane's (its /version) and the connected proxies' (from /debug/syncz)."""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request
from typing import Any

from istiod_py.cli.common import EXIT_CODES_HELP, CliError, ExitCode, SubParsers, add_output_flag, emit


def client_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("istiod_py")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def register(sub: SubParsers) -> None:
    p = sub.add_parser(
        "version",
        help="print the client's version (and the control plane's and proxies' with --debug-address)",
        description=__doc__,
        epilog=EXIT_CODES_HELP,
    )
    p.add_argument(
        "--debug-address",
        default="",
        metavar="HOST:PORT",
        help="the control plane's debug HTTP (serve --debug-port, 15014); without it only the client is shown",
    )
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the control plane (default 5)")
    add_output_flag(p)
    p.set_defaults(func=run_version)


def _get(base: str, path: str, timeout: float) -> Any:
    url = f"{base}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise CliError(f"{url}: HTTP {e.code}; is this an istiod-py debug port?", ExitCode.UNAVAILABLE) from None
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise CliError(f"{url}: control plane not reachable: {reason}", ExitCode.UNAVAILABLE) from None


def run_version(args: argparse.Namespace) -> int:
    report: dict[str, Any] = {"client": {"version": client_version()}}
    if args.debug_address:
        base = args.debug_address if "://" in args.debug_address else f"http://{args.debug_address}"
        server = _get(base, "/version", args.timeout)
        report["controlPlane"] = {"address": args.debug_address, **server}
        syncz = _get(base, "/debug/syncz", args.timeout)
        report["proxies"] = [
            {
                "proxy": e.get("proxy", "?"),
                "nodeId": e.get("node_id", ""),
                # From the node metadata `istiod-py agent` sets; "" for a bare Envoy.
                "envoyVersion": e.get("envoy_version") or "unknown",
                "agentVersion": e.get("istio_version") or "unknown",
            }
            for e in syncz
        ]
    emit(report, args.output, _table)
    return ExitCode.OK


def _table(report: dict[str, Any]) -> list[list[str]]:
    rows = [["COMPONENT", "VERSION"], ["client", report["client"]["version"]]]
    if "controlPlane" in report:
        cp = report["controlPlane"]
        rows.append([f"control plane ({cp['address']})", str(cp.get("version", "unknown"))])
        for p in report["proxies"]:
            rows.append([f"proxy {p['proxy']}", f"envoy {p['envoyVersion']}, agent {p['agentVersion']}"])
    return rows
