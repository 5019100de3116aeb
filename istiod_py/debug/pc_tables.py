"""Envoy admin dumps -> the rows `istioctl proxy-config` prints, with its filters.

Input is Envoy's own JSON (admin /config_dump, /clusters?format=json); the items
returned are Envoy's objects unchanged (so -o json is the admin dump, filtered),
and the *_table functions make istioctl's columns from them. Where a resource
carries Istio's origin (`metadata.filter_metadata.istio.config`, a path like
/apis/networking.istio.io/v1/namespaces/NS/destination-rule/NAME), the
DESTINATION RULE and VIRTUAL SERVICE columns show NAME.NS, as istioctl does."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

Rows = list[list[str]]


@dataclass(frozen=True)
class Filters:
    fqdn: str = ""
    port: int = 0
    subset: str = ""
    direction: str = ""
    name: str = ""
    address: str = ""
    type: str = ""
    cluster: str = ""
    status: str = ""


def section(dump: dict[str, Any], kind: str) -> dict[str, Any]:
    for c in dump.get("configs") or []:
        if str(c.get("@type", "")).rsplit(".", 1)[-1] == kind:
            return dict(c)
    return {}


def origin(obj: dict[str, Any]) -> str:
    """NAME.NS of the Istio config that produced `obj`, or "-"."""
    path = str(((obj.get("metadata") or {}).get("filter_metadata") or {}).get("istio", {}).get("config", ""))
    parts = path.strip("/").split("/")
    if len(parts) >= 4 and parts[-4] == "namespaces":
        return f"{parts[-1]}.{parts[-3]}"
    return "-"


# --- clusters ----------------------------------------------------------------------


def parse_cluster_name(name: str) -> tuple[str, str, str, str]:
    """(fqdn, port, subset, direction) of Istio's `direction|port|subset|fqdn` names."""
    parts = name.split("|")
    if len(parts) == 4:
        return parts[3], parts[1], parts[2], parts[0]
    return name, "", "", ""


def clusters(dump: dict[str, Any], f: Filters) -> list[dict[str, Any]]:
    sec = section(dump, "ClustersConfigDump")
    items = [c.get("cluster", {}) for c in sec.get("static_clusters") or []]
    items += [c.get("cluster", {}) for c in sec.get("dynamic_active_clusters") or []]
    out = []
    for c in items:
        fqdn, port, subset, direction = parse_cluster_name(str(c.get("name", "")))
        if f.fqdn and fqdn != f.fqdn and not fqdn.startswith(f.fqdn + "."):
            continue
        if f.port and port != str(f.port):
            continue
        if f.subset and subset != f.subset:
            continue
        if f.direction and direction != f.direction:
            continue
        out.append(c)
    return out


def cluster_type(c: dict[str, Any]) -> str:
    if "cluster_type" in c:
        return str(c["cluster_type"].get("name", "CUSTOM"))
    return str(c.get("type", "STATIC"))


def cluster_table(items: list[dict[str, Any]]) -> Rows:
    rows = [["SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE", "DESTINATION RULE"]]
    for c in items:
        fqdn, port, subset, direction = parse_cluster_name(str(c.get("name", "")))
        rows.append([fqdn, port or "-", subset or "-", direction or "-", cluster_type(c), origin(c)])
    return rows


# --- listeners ---------------------------------------------------------------------


def _addresses(lis: dict[str, Any]) -> list[str]:
    addrs = [lis.get("address", {})] + [a.get("address", {}) for a in lis.get("additional_addresses") or []]
    return [str(a.get("socket_address", {}).get("address", "")) for a in addrs if a.get("socket_address")]


def _port(lis: dict[str, Any]) -> int:
    return int(lis.get("address", {}).get("socket_address", {}).get("port_value", 0))


def _chain_kind(chain: dict[str, Any]) -> str:
    names = [str(x.get("name", "")) for x in chain.get("filters") or []]
    if any("http_connection_manager" in n for n in names):
        return "HTTP"
    if any("tcp_proxy" in n for n in names):
        return "TCP"
    return ""


def listeners(dump: dict[str, Any], f: Filters) -> list[dict[str, Any]]:
    sec = section(dump, "ListenersConfigDump")
    items = [x.get("listener", {}) for x in sec.get("static_listeners") or []]
    items += [x.get("active_state", {}).get("listener", {}) for x in sec.get("dynamic_listeners") or []]
    out = []
    for lis in items:
        if not lis:
            continue
        if f.address and f.address not in _addresses(lis):
            continue
        if f.port and _port(lis) != f.port:
            continue
        chains = list(lis.get("filter_chains") or [])
        if f.type and not any(_chain_kind(c) == f.type for c in chains):
            continue
        out.append(lis)
    return out


def _match(chain: dict[str, Any]) -> str:
    m = chain.get("filter_chain_match") or {}
    bits = []
    if m.get("server_names"):
        bits.append("SNI: " + ",".join(m["server_names"]))
    if m.get("transport_protocol"):
        bits.append("Trans: " + str(m["transport_protocol"]))
    if m.get("application_protocols"):
        bits.append("App: " + ",".join(m["application_protocols"]))
    if m.get("destination_port"):
        bits.append(f"Port: {m['destination_port']}")
    if m.get("prefix_ranges"):
        bits.append(
            "Addr: " + ",".join(f"{r.get('address_prefix')}/{r.get('prefix_len', 0)}" for r in m["prefix_ranges"])
        )
    return "; ".join(bits) or "ALL"


def _destination(chain: dict[str, Any]) -> str:
    for flt in chain.get("filters") or []:
        tc = flt.get("typed_config") or {}
        name = str(flt.get("name", ""))
        if "http_connection_manager" in name:
            if "rds" in tc:
                return f"Route: {tc['rds'].get('route_config_name', '')}"
            return "Inline Route: " + str((tc.get("route_config") or {}).get("name", ""))
        if "tcp_proxy" in name:
            if "cluster" in tc:
                return f"Cluster: {tc['cluster']}"
            return "Weighted: " + ",".join(
                str(w.get("name")) for w in (tc.get("weighted_clusters") or {}).get("clusters", [])
            )
    return "Non-HTTP/Non-TCP"


def listener_table(items: list[dict[str, Any]]) -> Rows:
    rows = [["ADDRESSES", "PORT", "MATCH", "DESTINATION"]]
    for lis in items:
        addrs, port = ",".join(_addresses(lis)), str(_port(lis))
        chains = list(lis.get("filter_chains") or [])
        if lis.get("default_filter_chain"):
            chains.append(lis["default_filter_chain"])
        if not chains:
            rows.append([addrs, port, "ALL", "-"])
        for chain in chains:
            rows.append([addrs, port, _match(chain), _destination(chain)])
    return rows


# --- routes ------------------------------------------------------------------------


def routes(dump: dict[str, Any], f: Filters) -> list[dict[str, Any]]:
    sec = section(dump, "RoutesConfigDump")
    items = [x.get("route_config", {}) for x in sec.get("static_route_configs") or []]
    items += [x.get("route_config", {}) for x in sec.get("dynamic_route_configs") or []]
    return [r for r in items if r and (not f.name or r.get("name") == f.name)]


def _route_match(route: dict[str, Any]) -> str:
    m = route.get("match") or {}
    if "prefix" in m:
        return str(m["prefix"]) + "*"
    if "path" in m:
        return str(m["path"])
    if "safe_regex" in m:
        return str(m["safe_regex"].get("regex", ""))
    if "path_separated_prefix" in m:
        return str(m["path_separated_prefix"]) + "/*"
    return "-"


def _domains(vh: dict[str, Any]) -> str:
    doms = [str(d) for d in vh.get("domains") or []]
    if len(doms) > 2:
        return f"{', '.join(doms[:2])} + {len(doms) - 2} more..."
    return ", ".join(doms)


def route_table(items: list[dict[str, Any]]) -> Rows:
    rows = [["NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE"]]
    for rc in items:
        for vh in rc.get("virtual_hosts") or []:
            rs = vh.get("routes") or []
            if not rs:
                rows.append([str(rc.get("name", "")), str(vh.get("name", "")), _domains(vh), "-", "404"])
            for r in rs:
                rows.append(
                    [str(rc.get("name", "")), str(vh.get("name", "")), _domains(vh), _route_match(r), origin(r)]
                )
    return rows


# --- endpoints (/clusters?format=json) ----------------------------------------------


def endpoints(status: dict[str, Any], f: Filters) -> list[dict[str, Any]]:
    out = []
    for cs in status.get("cluster_statuses") or []:
        cname = str(cs.get("name", ""))
        fqdn, _, _, _ = parse_cluster_name(cname)
        if f.cluster and cname != f.cluster:
            continue
        if f.fqdn and fqdn != f.fqdn and not fqdn.startswith(f.fqdn + "."):
            continue
        for hs in cs.get("host_statuses") or []:
            sa = (hs.get("address") or {}).get("socket_address") or {}
            if f.address and sa.get("address") != f.address:
                continue
            if f.port and int(sa.get("port_value", 0)) != f.port:
                continue
            if f.status and _health(hs) != f.status.upper():
                continue
            out.append({"cluster": cname, **hs})
    return out


def _health(hs: dict[str, Any]) -> str:
    hsn = hs.get("health_status") or {}
    if hsn.get("failed_active_health_check"):
        return "UNHEALTHY"
    return str(hsn.get("eds_health_status") or "HEALTHY")


def endpoint_table(items: list[dict[str, Any]]) -> Rows:
    rows = [["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"]]
    for hs in items:
        sa = (hs.get("address") or {}).get("socket_address") or {}
        pipe = (hs.get("address") or {}).get("pipe") or {}
        addr = f"{sa.get('address')}:{sa.get('port_value')}" if sa else f"unix://{pipe.get('path', '')}"
        outlier = "FAILED" if (hs.get("health_status") or {}).get("failed_outlier_check") else "OK"
        rows.append([addr, _health(hs), outlier, hs["cluster"]])
    return rows


# --- secrets -----------------------------------------------------------------------


def secrets(dump: dict[str, Any], f: Filters) -> list[dict[str, Any]]:
    sec = section(dump, "SecretsConfigDump")
    out = []
    for state, key in (("ACTIVE", "dynamic_active_secrets"), ("WARMING", "dynamic_warming_secrets")):
        for s in sec.get(key) or []:
            if f.name and s.get("name") != f.name:
                continue
            out.append({"state": state, **s})
    for s in sec.get("static_secrets") or []:
        if not f.name or s.get("name") == f.name:
            out.append({"state": "ACTIVE", **s})
    return out


def _cert_info(pem_b64: str) -> tuple[str, str, str, str]:
    """(valid, serial, not after, not before) of the first certificate in a PEM."""
    from datetime import UTC, datetime

    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificates(base64.b64decode(pem_b64))[0]
    except (ValueError, IndexError):
        return "false", "-", "-", "-"
    now = datetime.now(UTC)
    valid = cert.not_valid_before_utc <= now <= cert.not_valid_after_utc
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return (
        "true" if valid else "false",
        format(cert.serial_number, "x"),
        cert.not_valid_after_utc.strftime(fmt),
        cert.not_valid_before_utc.strftime(fmt),
    )


def secret_table(items: list[dict[str, Any]]) -> Rows:
    rows = [["RESOURCE NAME", "TYPE", "STATUS", "VALID CERT", "SERIAL NUMBER", "NOT AFTER", "NOT BEFORE"]]
    for s in items:
        body = s.get("secret") or {}
        if "tls_certificate" in body:
            kind, data = "Cert Chain", body["tls_certificate"].get("certificate_chain", {}).get("inline_bytes", "")
        elif "validation_context" in body:
            kind, data = "CA", body["validation_context"].get("trusted_ca", {}).get("inline_bytes", "")
        else:
            kind, data = "-", ""
        info = _cert_info(data) if data else ("false", "-", "-", "-")
        rows.append([str(s.get("name", "")), kind, s["state"], *info])
    return rows


# --- log levels (POST /logging) --------------------------------------------------------


def parse_loggers(text: str) -> dict[str, str]:
    """Envoy's `active loggers:` listing -> {logger: level}."""
    out: dict[str, str] = {}
    lines = text.splitlines()
    if not lines or not lines[0].startswith("active loggers"):
        return out
    for line in lines[1:]:
        name, sep, level = line.strip().partition(": ")
        if sep:
            out[name] = level
    return out
