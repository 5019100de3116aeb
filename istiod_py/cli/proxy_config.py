"""`istiod-py proxy-config cluster|listener|route|endpoint|secret|bootstrap|log|all PROXY`:
a proxy's configuration as its Envoy holds it (admin /config_dump, /clusters,
/logging), with `istioctl proxy-config`'s filters and table columns.

PROXY is name.namespace (or a connection/node id) of a proxy connected to the
control plane at --debug-address; its Envoy admin address comes from its node
metadata. With --admin HOST:PORT the control plane is not asked and PROXY may be
omitted; with -f FILE a saved config_dump is read (also the control plane's own
/debug/config_dump?proxyID=, which has Envoy's shape). -o json|yaml prints the
matching resources exactly as Envoy dumped them.

`log` shows Envoy's log levels; --level LEVEL or --level name:level,name:level
changes them; --reset sets every logger to warning (istioctl's default)."""

from __future__ import annotations

import argparse
from typing import Any

from istiod_py.cli.common import EXIT_CODES_HELP, CliError, ExitCode, SubParsers, add_output_flag, emit, format_table

KINDS = ("cluster", "listener", "route", "endpoint", "secret", "bootstrap", "log", "all")
ALIASES = {"clusters": "cluster", "c": "cluster", "listeners": "listener", "l": "listener", "routes": "route",
           "r": "route", "endpoints": "endpoint", "ep": "endpoint", "secrets": "secret", "s": "secret",
           "b": "bootstrap", "o": "log"}  # fmt: skip


def register(sub: SubParsers) -> None:
    p = sub.add_parser(
        "proxy-config",
        aliases=["pc"],
        help="a proxy's Envoy configuration (clusters, listeners, routes, endpoints, secrets, bootstrap, log)",
        description=__doc__,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("kind", choices=sorted({*KINDS, *ALIASES}), metavar="KIND", help=f"one of {', '.join(KINDS)}")
    p.add_argument("proxy", nargs="?", default="", help="name.namespace of a connected proxy")
    add_debug_flags(p)
    p.add_argument("--admin", default="", metavar="HOST:PORT", help="the Envoy admin address (default: from metadata)")
    p.add_argument("-f", "--file", default="", metavar="CONFIG_DUMP.json",
                   help="read a saved Envoy /config_dump instead of a live proxy (not for endpoint/log)")  # fmt: skip
    p.add_argument("--fqdn", default="", help="cluster/endpoint: only this service FQDN")
    p.add_argument("--port", type=int, default=0, help="cluster/listener/endpoint: only this port")
    p.add_argument("--subset", default="", help="cluster: only this subset")
    p.add_argument("--direction", default="", choices=["", "inbound", "outbound"], help="cluster: only this direction")
    p.add_argument("--name", default="", help="route: only this route config; secret: only this secret")
    p.add_argument("--address", default="", help="listener/endpoint: only this address")
    p.add_argument("--type", default="", choices=["", "HTTP", "TCP"], help="listener: only HTTP or TCP chains")
    p.add_argument("--cluster", default="", help="endpoint: only this cluster")
    p.add_argument("--status", default="", help="endpoint: only this health status (HEALTHY, UNHEALTHY, ...)")
    p.add_argument("--level", default="", help="log: LEVEL for every logger, or name:level[,name:level]")
    p.add_argument("--reset", action="store_true", help="log: set every logger to warning")
    add_output_flag(p)
    p.set_defaults(func=run_proxy_config)


def add_debug_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--debug-address",
        default="127.0.0.1:15014",
        metavar="HOST:PORT",
        help="the control plane's debug HTTP, to find PROXY's admin address (default 127.0.0.1:15014)",
    )
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each HTTP answer (default 5)")


def admin_of(args: argparse.Namespace) -> str:
    from istiod_py.debug import client

    if args.admin:
        return str(args.admin)
    if not args.proxy:
        raise CliError("give PROXY (name.namespace) or --admin HOST:PORT", ExitCode.USAGE)
    entry = client.find_proxy(client.syncz(args.debug_address, args.timeout), args.proxy)
    admin = str(entry.get("admin_address") or "")
    if not admin:
        raise CliError(f"proxy {entry.get('proxy')}: no admin address in its node metadata; pass --admin HOST:PORT")
    return admin


def run_proxy_config(args: argparse.Namespace) -> int:
    from istiod_py.debug import client
    from istiod_py.debug import pc_tables as tables

    kind = ALIASES.get(args.kind, args.kind)
    dump: dict[str, Any]
    clusters: dict[str, Any] = {}
    try:
        if args.file:
            if kind in ("endpoint", "log"):
                raise CliError(f"proxy-config {kind} needs a live proxy (--admin or PROXY), not --file", ExitCode.USAGE)
            dump = _read_dump(args.file)
        else:
            admin = admin_of(args)
            if kind == "log":
                return _log(args, admin)
            dump = client.get_json(admin, "/config_dump", args.timeout)
            want_eds = kind in ("endpoint", "all")
            clusters = client.get_json(admin, "/clusters?format=json", args.timeout) if want_eds else {}
    except client.ClientError as e:
        code = ExitCode.FAILED if "is not connected" in str(e) else ExitCode.UNAVAILABLE
        raise CliError(str(e), code) from None
    f = tables.Filters(
        fqdn=args.fqdn,
        port=args.port,
        subset=args.subset,
        direction=args.direction,
        name=args.name,
        address=args.address,
        type=args.type,
        cluster=args.cluster,
        status=args.status,
    )
    if kind == "bootstrap":
        boot = tables.section(dump, "BootstrapConfigDump")
        emit(boot.get("bootstrap", {}), "json" if args.output == "table" else args.output)
        return ExitCode.OK
    if kind == "all":
        if args.output != "table":
            emit(dump, args.output)
            return ExitCode.OK
        parts = [
            tables.cluster_table(tables.clusters(dump, f)),
            tables.listener_table(tables.listeners(dump, f)),
            tables.route_table(tables.routes(dump, f)),
            tables.endpoint_table(tables.endpoints(clusters, f)),
            tables.secret_table(tables.secrets(dump, f)),
        ]
        print("\n".join(format_table(t) for t in parts), end="")
        return ExitCode.OK
    items: list[Any]
    if kind == "cluster":
        items, table = tables.clusters(dump, f), tables.cluster_table
    elif kind == "listener":
        items, table = tables.listeners(dump, f), tables.listener_table
    elif kind == "route":
        items, table = tables.routes(dump, f), tables.route_table
    elif kind == "endpoint":
        items, table = tables.endpoints(clusters, f), tables.endpoint_table
    else:
        items, table = tables.secrets(dump, f), tables.secret_table
    emit(items, args.output, table)
    return ExitCode.OK


def _read_dump(path: str) -> dict[str, Any]:
    import json

    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise CliError(f"{path}: cannot read: {e.strerror or e}", ExitCode.INPUT) from None
    except ValueError as e:
        raise CliError(f"{path}: not JSON: {e}", ExitCode.INPUT) from None
    if not isinstance(data, dict) or "configs" not in data:
        raise CliError(f"{path}: not an Envoy config_dump (no 'configs' list)", ExitCode.INPUT)
    return data


def _log(args: argparse.Namespace, admin: str) -> int:
    from istiod_py.debug import client
    from istiod_py.debug import pc_tables as tables

    query = ""
    if args.reset:
        query = "?level=warning"
    elif args.level:
        if ":" in args.level:
            pairs = [p.split(":", 1) for p in args.level.split(",") if p]
            query = "?" + "&".join(f"{client.quote(k)}={client.quote(v)}" for k, v in pairs)
        else:
            query = f"?level={client.quote(args.level)}"
    text = client.get_text(admin, "/logging" + query, args.timeout, method="POST")
    levels = tables.parse_loggers(text)
    if not levels:
        raise CliError(f"{admin}/logging{query}: {text.strip()[:300]}")
    emit(levels, args.output, lambda d: [["LOGGER", "LEVEL"], *([k, v] for k, v in sorted(d.items()))])
    return ExitCode.OK
