"""`istiod-py proxy-status [PROXY]`: the xDS sync state of every connected proxy, as
`istioctl proxy-status` prints it (NAME, CLUSTER, CDS, LDS, EDS, RDS, SDS, ISTIOD,
VERSION; SYNCED / NOT SENT / STALE), read from the control plane's /debug/syncz.
A proxy whose last response was rejected is STALE, and its NACK message is shown;
one served without the config it rejected (quarantine) is STALE (Quarantined).

With PROXY: what the control plane would send it now against what its Envoy holds
(its admin /config_dump), per type: "Clusters Match" or "Clusters Don't Match" and
a diff, as istioctl does. The Envoy admin address comes from the proxy's node
metadata (ADMIN_ADDRESS, or PROXY_CONFIG.proxyAdminPort on its IP) unless --admin."""

from __future__ import annotations

import argparse
import difflib
import json
from typing import Any

from istiod_py.cli.common import EXIT_CODES_HELP, CliError, ExitCode, SubParsers, add_output_flag, emit

TYPES = ("CDS", "LDS", "EDS", "RDS", "SDS")


def register(sub: SubParsers) -> None:
    p = sub.add_parser(
        "proxy-status",
        aliases=["ps"],
        help="sync state of each connected proxy (or, with PROXY, control plane vs Envoy config)",
        description=__doc__,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("proxy", nargs="?", default="", help="name.namespace (or connection/node id) of one proxy")
    add_debug_flags(p)
    p.add_argument("--admin", default="", metavar="HOST:PORT", help="the proxy's Envoy admin (default: from metadata)")
    add_output_flag(p)
    p.set_defaults(func=run_proxy_status)


def add_debug_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--debug-address",
        default="127.0.0.1:15014",
        metavar="HOST:PORT",
        help="the control plane's debug HTTP (serve --debug-port; default 127.0.0.1:15014)",
    )
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each HTTP answer (default 5)")


def xds_status(t: dict[str, Any] | None) -> str:
    """istioctl's rule: nothing sent; sent == ACKed; sent but never ACKed; behind.
    A proxy served without a config it rejected (NACK quarantine, issue 16) ACKs
    what it gets but does not hold the whole current config: STALE (Quarantined)."""
    if not t or not t.get("nonce_sent"):
        return "NOT SENT"
    if (t.get("last_nack") or {}).get("quarantined"):
        return "STALE (Quarantined)"
    if t.get("nonce_sent") == t.get("nonce_acked"):
        return "SYNCED"
    if not t.get("nonce_acked"):
        return "STALE (Never Acknowledged)"
    return "STALE"


def rows_of(entries: list[dict[str, Any]], istiod: str) -> list[dict[str, Any]]:
    out = []
    for e in sorted(entries, key=lambda x: str(x.get("proxy"))):
        types = e.get("types") or {}
        row: dict[str, Any] = {
            "name": e.get("proxy", ""),
            "cluster": e.get("cluster_id") or "Kubernetes",
            **{k.lower(): xds_status(types.get(k)) for k in TYPES},
            "istiod": istiod,
            "version": e.get("istio_version") or "unknown",
            "nacks": [],
        }
        for k in TYPES:
            t = types.get(k) or {}
            nack = t.get("last_nack")
            # Only a NACK of the newest response explains a STALE column; older ones were fixed since.
            # A quarantined one (issue 16) stays shown: the proxy is served without its cause.
            if nack and (nack.get("nonce") == t.get("nonce_sent") or nack.get("quarantined")):
                row["nacks"].append(
                    {
                        "type": k,
                        "message": nack.get("message", ""),
                        "version": nack.get("version"),
                        "origins": nack.get("origins") or [],
                        "quarantined": bool(nack.get("quarantined")),
                    }
                )
        out.append(row)
    return out


def _table(rows: list[dict[str, Any]]) -> list[list[str]]:
    table = [["NAME", "CLUSTER", *TYPES, "ISTIOD", "VERSION"]]
    for r in rows:
        table.append([r["name"], r["cluster"], *(r[k.lower()] for k in TYPES), r["istiod"], r["version"]])
    return table


def run_proxy_status(args: argparse.Namespace) -> int:
    from istiod_py.debug import client

    try:
        entries = client.syncz(args.debug_address, args.timeout)
        if args.proxy:
            entry = client.find_proxy(entries, args.proxy)
            return _diff(args, entry)
        version = client.get_json(args.debug_address, "/version", args.timeout)
    except client.ClientError as e:
        code = ExitCode.FAILED if "is not connected" in str(e) else ExitCode.UNAVAILABLE
        raise CliError(str(e), code) from None
    rows = rows_of(entries, str(version.get("instance") or args.debug_address))
    if args.output == "table":
        out = emit_table(rows)
        print(out, end="")
    else:
        emit(rows, args.output)
    return ExitCode.OK


def emit_table(rows: list[dict[str, Any]]) -> str:
    from istiod_py.cli.common import format_table

    text = format_table(_table(rows))
    for r in rows:
        for n in r["nacks"]:
            cause = f" (caused by {', '.join(n['origins'])})" if n.get("origins") else ""
            held = "; quarantined: served without it until it changes" if n.get("quarantined") else ""
            text += f"{r['name']} {n['type']} NACK: {n['message']}{cause}{held}\n"
    return text


# --- one proxy: the control plane's config against Envoy's ------------------------------

KINDS = (
    ("Clusters", "ClustersConfigDump", "dynamic_active_clusters", ("cluster",)),
    ("Listeners", "ListenersConfigDump", "dynamic_listeners", ("active_state", "listener")),
    ("Routes", "RoutesConfigDump", "dynamic_route_configs", ("route_config",)),
)


def resources(dump: dict[str, Any], kind: str, field: str, path: tuple[str, ...]) -> dict[str, Any]:
    """name -> resource JSON of one section of an Envoy ConfigDump."""
    out: dict[str, Any] = {}
    for c in dump.get("configs") or []:
        if str(c.get("@type", "")).rsplit(".", 1)[-1] != kind:
            continue
        for item in c.get(field) or []:
            obj: Any = item
            for key in path:
                obj = obj.get(key) if isinstance(obj, dict) else None
            if isinstance(obj, dict) and obj.get("name"):
                out[str(obj["name"])] = obj
    return out


def _diff(args: argparse.Namespace, entry: dict[str, Any]) -> int:
    from istiod_py.debug import client

    admin = args.admin or entry.get("admin_address") or ""
    if not admin:
        raise CliError(f"proxy {entry.get('proxy')}: no admin address in its node metadata; pass --admin HOST:PORT")
    cp = client.get_json(
        args.debug_address, f"/debug/config_dump?proxyID={client.quote(entry['connection_id'])}&current=true"
    )
    envoy = client.get_json(admin, "/config_dump", args.timeout)
    report: dict[str, Any] = {"proxy": entry.get("proxy"), "admin": admin, "match": True}
    text = ""
    for label, kind, field, path in KINDS:
        want = resources(cp, kind, field, path)
        have = resources(envoy, kind, field, path)
        a = json.dumps(want, indent=2, sort_keys=True).splitlines()
        b = json.dumps(have, indent=2, sort_keys=True).splitlines()
        diff = list(difflib.unified_diff(a, b, "Istiod", "Envoy", lineterm=""))
        report[label.lower()] = {"match": not diff, "diff": diff}
        if diff:
            report["match"] = False
            text += f"{label} Don't Match\n" + "\n".join(diff) + "\n"
        else:
            text += f"{label} Match\n"
    if args.output == "table":
        print(text, end="")
    else:
        emit(report, args.output)
    return ExitCode.OK if report["match"] else ExitCode.FAILED
