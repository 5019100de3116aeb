"""`istiod-py preview --config-dir NEW`: what applying NEW (the whole new config
directory) would change, per proxy: resources added, removed and changed with a
field-level diff, the Istio configs that cause each change, and the push it
would trigger (full or EDS-only, proxies touched, bytes).

Against the running control plane (`--debug-address`, its connected proxies) or
offline (`--from DIR`: the current config directory; proxies are its
WorkloadEntries plus any `--proxy`). Exit status as diff(1): 0 nothing changes,
1 something changes, 3 NEW (or DIR) does not load, 4 the control plane does not
answer."""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from istiod_py.cli.common import CliError, ExitCode, SubParsers, add_output_flag, emit


def register(sub: SubParsers) -> None:
    p = sub.add_parser(
        "preview",
        help="what applying a new config directory would change for each proxy (dry run)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config-dir", required=True, metavar="NEW", help="the new config directory")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--from", dest="from_dir", metavar="DIR", help="offline: the current config directory")
    where.add_argument(
        "--debug-address",
        default="127.0.0.1:15014",
        metavar="HOST:PORT",
        help="the running control plane's debug HTTP (default 127.0.0.1:15014)",
    )
    p.add_argument(
        "--proxy",
        action="append",
        default=[],
        metavar="ID",
        help="only this proxy (name.namespace or node id; offline: NODE_ID[@label=value,...]); repeatable",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the control plane (default 30)")
    add_output_flag(p)
    p.set_defaults(func=run_preview)


def _load(path: str) -> Any:
    from istiod_py.preview import plan

    if not Path(path).is_dir():
        raise CliError(f"{path}: not a directory", ExitCode.INPUT)
    try:
        return plan.load_dir(path)
    except plan.PreviewError as e:
        raise CliError(f"{path}: {e}", ExitCode.INPUT) from None


def _bundle(path: str) -> str:
    files = sorted(p for p in Path(path).rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    return "\n---\n".join(f.read_text(encoding="utf-8") for f in files)


def _offline(args: argparse.Namespace) -> dict[str, Any]:
    from istiod_py.model import MeshConfig, ProxyError
    from istiod_py.preview import plan
    from istiod_py.translate.generate import Translator

    old_state = plan.state_of(_load(args.from_dir), MeshConfig())
    new_state = plan.state_of(_load(args.config_dir), MeshConfig())
    try:
        named = [plan.named_proxy(p) for p in args.proxy if "~" in p]
    except ProxyError as e:
        raise CliError(str(e), ExitCode.USAGE) from None
    proxies = plan.workload_proxies(old_state, new_state)
    short = [p for p in args.proxy if "~" not in p]
    if short:
        proxies = [p for p in proxies if p.id in short]
    return plan.preview(old_state, new_state, [*proxies, *named], Translator().generate, Translator().generate)


def _online(args: argparse.Namespace) -> dict[str, Any]:
    _load(args.config_dir)  # errors name the file, before anything is sent
    base = args.debug_address if "://" in args.debug_address else f"http://{args.debug_address}"
    query = urllib.parse.urlencode([("proxy", p) for p in args.proxy])
    url = f"{base}/debug/preview" + (f"?{query}" if query else "")
    req = urllib.request.Request(url, data=_bundle(args.config_dir).encode(), method="POST")
    req.add_header("Content-Type", "application/yaml")
    try:
        with urllib.request.urlopen(req, timeout=args.timeout) as r:
            return dict(json.loads(r.read()))
    except urllib.error.HTTPError as e:
        try:
            detail = json.loads(e.read()).get("error", "")
        except (ValueError, OSError):
            detail = ""
        if detail:
            raise CliError(detail, ExitCode.INPUT if e.code == 400 else ExitCode.FAILED) from None
        raise CliError(f"{url}: HTTP {e.code}; is this an istiod-py debug port?", ExitCode.UNAVAILABLE) from None
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise CliError(f"{url}: control plane not reachable: {reason}", ExitCode.UNAVAILABLE) from None


def run_preview(args: argparse.Namespace) -> int:
    from istiod_py.preview.plan import render_text

    report = _offline(args) if args.from_dir else _online(args)
    if args.output == "table":
        print(render_text(report), end="")
    else:
        emit(report, args.output)
    return ExitCode.FAILED if report["changes"] else ExitCode.OK
