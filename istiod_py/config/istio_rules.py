"""Istio's own validation rules (istio/istio pkg/config/validation), per kind, on
top of the structural checks in validation.py: what istiod's webhook rejects,
istiod_py rejects at load time, with the field named. docs/field-support.md
lists the rules implemented here.
"""

from __future__ import annotations

from typing import Any

from istio.networking.v1alpha3 import destination_rule_pb2 as dr_pb

from istiod_py.config.model import quote
from istiod_py.config.proto_yaml import FieldProblem
from istiod_py.config.rules import (
    Problems,
    check_duration,
    check_export_to,
    check_header_name,
    check_host,
    check_ip_or_cidr,
    check_port,
    fqdn_problem,
    is_dns1123_label,
)

# Envoy's x-envoy-retry-on and x-envoy-retry-grpc-on policies, as istiod accepts them.
RETRY_ON = frozenset(
    {
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "envoy-ratelimited",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    }
)
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE"})
MAX_DIRECT_RESPONSE_BYTES = 1024 * 1024
MAGLEV_TABLE_LIMIT = 5_000_011


# VirtualService ---------------------------------------------------------------------------------


def _destination(d: Any, path: str, out: Problems) -> None:
    if d.host == "*":
        out.append(FieldProblem(f"{path}.host", "'*' is not a valid destination host"))
    elif d.host:
        check_host(d.host, f"{path}.host", out)
    if d.subset and not is_dns1123_label(d.subset):
        out.append(FieldProblem(f"{path}.subset", f"subset name {quote(d.subset)} is not a DNS-1123 label"))


def _header_ops(headers: Any, path: str, out: Problems) -> None:
    for side in ("request", "response"):
        if not headers.HasField(side):
            continue
        ops = getattr(headers, side)
        for op in ("set", "add"):
            for name, value in getattr(ops, op).items():
                _header_op_name(name, side, op, f"{path}.{side}.{op}[{name}]", out)
                if any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in value):
                    out.append(FieldProblem(f"{path}.{side}.{op}[{name}]", "header value has control characters"))
        for i, name in enumerate(ops.remove):
            if not name:
                out.append(FieldProblem(f"{path}.{side}.remove[{i}]", "header name cannot be empty"))


def _header_op_name(name: str, side: str, op: str, path: str, out: Problems) -> None:
    authority = name.lower() in (":authority", "host")
    if not name:
        out.append(FieldProblem(path, "header name cannot be empty"))
    elif side == "request" and op in ("set", "add") and authority:
        return  # istiod allows rewriting the authority this way
    elif name.lower() == "host":
        out.append(FieldProblem(path, "cannot set or remove the Host header here"))
    elif name.startswith(":"):
        out.append(FieldProblem(path, f"header {quote(name)} cannot have a ':' prefix"))


def _percentage(msg: Any, path: str, out: Problems) -> None:
    if msg.HasField("percentage"):
        v = msg.percentage.value
        if v < 0 or v > 100 or 0 < v < 0.0001:
            out.append(FieldProblem(f"{path}.percentage.value", f"{v} is neither 0 nor in [0.0001, 100]"))


def _retries(r: Any, path: str, out: Problems) -> None:
    if r.attempts == 0 and (r.HasField("per_try_timeout") or r.retry_on or r.HasField("retry_remote_localities")):
        out.append(FieldProblem(f"{path}.attempts", "retry settings given while attempts is 0 (retries disabled)"))
    check_duration(r, "per_try_timeout", path, out)
    if r.retry_on:
        for policy in r.retry_on.split(","):
            if policy not in RETRY_ON and not (policy.isdigit() and 100 <= int(policy) <= 599):
                out.append(FieldProblem(f"{path}.retryOn", f"{quote(policy)} is not a valid retryOn policy"))


def _redirect(r: Any, path: str, out: Problems) -> None:
    if not (r.uri or r.authority or r.scheme or r.WhichOneof("redirect_port") is not None):
        out.append(FieldProblem(path, "redirect must specify uri, authority, scheme or port"))
    if r.redirect_code and not 300 <= r.redirect_code <= 399:
        out.append(FieldProblem(f"{path}.redirectCode", f"{r.redirect_code} is not a 3xx redirect code"))
    if r.scheme and r.scheme not in ("http", "https"):
        out.append(FieldProblem(f"{path}.scheme", "redirect scheme must be http or https"))
    if r.WhichOneof("redirect_port") == "port":
        check_port(r.port, f"{path}.port", out)


def _rewrite(r: Any, path: str, out: Problems) -> None:
    has_regex = r.HasField("uri_regex_rewrite")
    if r.uri and has_regex:
        out.append(FieldProblem(path, "rewrite may contain only one of uri and uriRegexRewrite"))
    if not (r.uri or has_regex or r.authority):
        out.append(FieldProblem(path, "rewrite must set uri, uriRegexRewrite or authority"))
    if has_regex and not (r.uri_regex_rewrite.match and r.uri_regex_rewrite.rewrite):
        out.append(FieldProblem(f"{path}.uriRegexRewrite", "uriRegexRewrite needs both match and rewrite"))


def _cors(c: Any, path: str, out: Problems) -> None:
    for i, origin in enumerate(c.allow_origins):
        kind = origin.WhichOneof("match_type")
        if kind is None or not getattr(origin, kind):
            out.append(FieldProblem(f"{path}.allowOrigins[{i}]", "an allowed origin needs exact, prefix or regex"))
    for i, method in enumerate(c.allow_methods):
        if method not in HTTP_METHODS:
            out.append(FieldProblem(f"{path}.allowMethods[{i}]", f"{quote(method)} is not a supported HTTP method"))
    for field_name, json_name in (("allow_headers", "allowHeaders"), ("expose_headers", "exposeHeaders")):
        for i, name in enumerate(getattr(c, field_name)):
            if name != "*":
                check_header_name(name, f"{path}.{json_name}[{i}]", out)
    check_duration(c, "max_age", path, out)
    if c.HasField("max_age") and c.max_age.nanos:
        out.append(FieldProblem(f"{path}.maxAge", "maxAge is accurate only to seconds"))


def _http_route(r: Any, path: str, out: Problems) -> None:
    if r.HasField("redirect") and r.HasField("fault"):
        out.append(FieldProblem(f"{path}.fault", "an HTTP route cannot contain both fault and redirect"))
    for i, m in enumerate(r.match):
        mpath = f"{path}.match[{i}]"
        for key in [*m.headers, *m.without_headers]:
            if not key.startswith("@request.auth.claims"):
                check_header_name(key, f"{mpath}.headers[{key}]", out)
        if m.source_namespace and not is_dns1123_label(m.source_namespace):
            out.append(FieldProblem(f"{mpath}.sourceNamespace", f"{quote(m.source_namespace)} is not a namespace name"))
    if r.HasField("headers"):
        _header_ops(r.headers, f"{path}.headers", out)
    for i, d in enumerate(r.route):
        if d.HasField("destination"):
            _destination(d.destination, f"{path}.route[{i}].destination", out)
        if d.HasField("headers"):
            _header_ops(d.headers, f"{path}.route[{i}].headers", out)
    check_duration(r, "timeout", path, out)
    if r.HasField("retries"):
        _retries(r.retries, f"{path}.retries", out)
    if r.HasField("redirect"):
        _redirect(r.redirect, f"{path}.redirect", out)
    if r.HasField("rewrite"):
        _rewrite(r.rewrite, f"{path}.rewrite", out)
    if r.HasField("cors_policy"):
        _cors(r.cors_policy, f"{path}.corsPolicy", out)
    if r.HasField("fault"):
        for name in ("delay", "abort"):
            if r.fault.HasField(name):
                _percentage(getattr(r.fault, name), f"{path}.fault.{name}", out)
        if r.fault.HasField("delay"):
            check_duration(r.fault.delay, "fixed_delay", f"{path}.fault.delay", out)
    if r.HasField("mirror"):
        _destination(r.mirror, f"{path}.mirror", out)
    for i, mirror in enumerate(r.mirrors):
        mpath = f"{path}.mirrors[{i}]"
        if not mirror.HasField("destination"):
            out.append(FieldProblem(f"{mpath}.destination", "destination is required for mirrors"))
        else:
            _destination(mirror.destination, f"{mpath}.destination", out)
        if mirror.HasField("percentage") and not 0 <= mirror.percentage.value <= 100:
            out.append(FieldProblem(f"{mpath}.percentage.value", "must be between 0 and 100"))
    if r.HasField("direct_response") and r.direct_response.HasField("body"):
        body = r.direct_response.body
        size = len(body.string) if body.WhichOneof("specifier") == "string" else len(body.bytes)
        if size > MAX_DIRECT_RESPONSE_BYTES:
            out.append(FieldProblem(f"{path}.directResponse.body", "a direct response body must be under 1 MiB"))


# Gateways that istiod generates from Gateway API listeners are named
# <gateway>~istio-autogenerated-k8s-gateway~<listener>; istiod skips the DNS-label
# check for such routes (gateway semantics), and so do we for that exact shape.
_AUTOGENERATED = "~istio-autogenerated-k8s-gateway~"


def _gateway_name_ok(gw: str) -> bool:
    if _AUTOGENERATED in gw:
        return all(is_dns1123_label(part) for part in gw.split(_AUTOGENERATED, 1))
    return is_dns1123_label(gw)


def _gateway_names(names: Any, path: str, out: Problems) -> None:
    for i, name in enumerate(names):
        ns, sep, gw = name.partition("/")
        if not sep:
            problem = fqdn_problem(name)
            if problem:
                out.append(FieldProblem(f"{path}[{i}]", f"invalid gateway name {quote(name)}: {problem}"))
        elif not (is_dns1123_label(ns) and _gateway_name_ok(gw)):
            out.append(FieldProblem(f"{path}[{i}]", f"{quote(name)} must be namespace/name (DNS-1123 labels)"))


def _l4_match(m: Any, path: str, out: Problems) -> None:
    for j, subnet in enumerate(m.destination_subnets):
        check_ip_or_cidr(subnet, f"{path}.destinationSubnets[{j}]", out)
    if m.port:
        check_port(m.port, f"{path}.port", out)
    _gateway_names(m.gateways, f"{path}.gateways", out)


def virtual_service_rules(vs: Any, namespace: str) -> Problems:
    out: Problems = []
    to_gateway = bool(vs.gateways) and "mesh" not in vs.gateways
    for i, h in enumerate(vs.hosts):
        if h:
            check_host(h, f"spec.hosts[{i}]", out, allow_ip=True)
        if h == "*" and not to_gateway:
            out.append(
                FieldProblem(f"spec.hosts[{i}]", "host '*' is only allowed for a VirtualService bound to gateways")
            )
    if len(set(vs.hosts)) != len(vs.hosts):
        out.append(FieldProblem("spec.hosts", "duplicate hosts"))
    _gateway_names(vs.gateways, "spec.gateways", out)
    for i, r in enumerate(vs.http):
        _http_route(r, f"spec.http[{i}]", out)
    for i, t in enumerate(vs.tls):
        for j, m in enumerate(t.match):
            for k, sni in enumerate(m.sni_hosts):
                check_host(sni, f"spec.tls[{i}].match[{j}].sniHosts[{k}]", out, allow_ip=True)
            _l4_match(m, f"spec.tls[{i}].match[{j}]", out)
        for j, d in enumerate(t.route):
            if d.HasField("destination"):
                _destination(d.destination, f"spec.tls[{i}].route[{j}].destination", out)
    for i, t in enumerate(vs.tcp):
        for j, m in enumerate(t.match):
            _l4_match(m, f"spec.tcp[{i}].match[{j}]", out)
        for j, d in enumerate(t.route):
            if d.HasField("destination"):
                _destination(d.destination, f"spec.tcp[{i}].route[{j}].destination", out)
    check_export_to(vs.export_to, namespace, "spec.exportTo", out)
    return out


# DestinationRule ---------------------------------------------------------------------------------


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    f = 3
    while f * f <= n:
        if n % f == 0:
            return False
        f += 2
    return True


def _outlier(od: Any, path: str, out: Problems) -> None:
    check_duration(od, "base_ejection_time", path, out)
    check_duration(od, "interval", path, out)
    if not od.split_external_local_origin_errors and od.consecutive_local_origin_failures.value > 0:
        out.append(
            FieldProblem(
                f"{path}.consecutiveLocalOriginFailures",
                "needs splitExternalLocalOriginErrors: true",
            )
        )
    if not 0 <= od.min_health_percent <= 100:
        out.append(FieldProblem(f"{path}.minHealthPercent", "must be between 0 and 100"))


def _connection_pool(cp: Any, path: str, out: Problems) -> None:
    if not cp.HasField("http") and not cp.HasField("tcp"):
        out.append(FieldProblem(path, "a connection pool needs tcp or http settings"))
    if cp.HasField("http"):
        h, hpath = cp.http, f"{path}.http"
        for name in ("http1_max_pending_requests", "http2_max_requests", "max_requests_per_connection", "max_retries"):
            if getattr(h, name) < 0:
                out.append(
                    FieldProblem(f"{hpath}.{h.DESCRIPTOR.fields_by_name[name].json_name}", "must not be negative")
                )
        if h.max_concurrent_streams < 0:
            out.append(FieldProblem(f"{hpath}.maxConcurrentStreams", "must not be negative"))
        check_duration(h, "idle_timeout", hpath, out)
        if h.h2_upgrade_policy == dr_pb.ConnectionPoolSettings.HTTPSettings.UPGRADE and h.use_client_protocol:
            out.append(FieldProblem(f"{hpath}.useClientProtocol", "cannot be true with h2UpgradePolicy UPGRADE"))
    if cp.HasField("tcp"):
        t, tpath = cp.tcp, f"{path}.tcp"
        if t.max_connections < 0:
            out.append(FieldProblem(f"{tpath}.maxConnections", "must not be negative"))
        for name in ("connect_timeout", "max_connection_duration", "idle_timeout"):
            check_duration(t, name, tpath, out)
        if t.HasField("tcp_keepalive"):
            check_duration(t.tcp_keepalive, "time", f"{tpath}.tcpKeepalive", out)
            check_duration(t.tcp_keepalive, "interval", f"{tpath}.tcpKeepalive", out)


def _load_balancer(lb: Any, path: str, out: Problems) -> None:
    if lb.HasField("consistent_hash"):
        ch, cpath = lb.consistent_hash, f"{path}.consistentHash"
        if ch.HasField("http_cookie") and not ch.http_cookie.name:
            out.append(FieldProblem(f"{cpath}.httpCookie.name", "name is required for httpCookie"))
        if ch.minimum_ring_size and ch.WhichOneof("hash_algorithm") is not None:
            out.append(FieldProblem(f"{cpath}.minimumRingSize", "set only one of minimumRingSize and ringHash/maglev"))
        if ch.HasField("maglev"):
            size = ch.maglev.table_size
            if not size or size >= MAGLEV_TABLE_LIMIT or not _is_prime(size):
                out.append(
                    FieldProblem(f"{cpath}.maglev.tableSize", f"tableSize must be a prime below {MAGLEV_TABLE_LIMIT}")
                )
    if lb.HasField("locality_lb_setting"):
        loc = lb.locality_lb_setting
        if loc.distribute and loc.failover:
            out.append(FieldProblem(f"{path}.localityLbSetting", "set either distribute or failover, not both"))
        for i, d in enumerate(loc.distribute):
            if any(not 1 <= w <= 100 for w in d.to.values()) or sum(d.to.values()) != 100:
                out.append(
                    FieldProblem(
                        f"{path}.localityLbSetting.distribute[{i}].to", "weights must be 1-100 and add up to 100"
                    )
                )
        for i, f in enumerate(loc.failover):
            if f.to == getattr(f, "from"):
                out.append(FieldProblem(f"{path}.localityLbSetting.failover[{i}]", "from and to must differ"))
    check_duration(lb, "warmup_duration_secs", path, out)


def _client_tls(tls: Any, path: str, out: Problems) -> None:
    skip = tls.insecure_skip_verify.value and tls.mode == dr_pb.ClientTLSSettings.SIMPLE
    if skip and (tls.ca_certificates or tls.subject_alt_names):
        out.append(FieldProblem(path, "caCertificates and subjectAltNames cannot be set with insecureSkipVerify"))


def _traffic_policy(tp: Any, path: str, out: Problems, port_level: bool = False) -> None:
    names: tuple[str, ...] = ("outlier_detection", "connection_pool", "load_balancer", "tls")
    if not port_level:
        names += ("tunnel", "proxy_protocol")
    if not any(tp.HasField(n) for n in names) and not (not port_level and tp.port_level_settings):
        out.append(FieldProblem(path, "a traffic policy must set at least one field"))
    if tp.HasField("outlier_detection"):
        _outlier(tp.outlier_detection, f"{path}.outlierDetection", out)
    if tp.HasField("connection_pool"):
        _connection_pool(tp.connection_pool, f"{path}.connectionPool", out)
    if tp.HasField("load_balancer"):
        _load_balancer(tp.load_balancer, f"{path}.loadBalancer", out)
    if tp.HasField("tls"):
        _client_tls(tp.tls, f"{path}.tls", out)
    if not port_level:
        for i, p in enumerate(tp.port_level_settings):
            _traffic_policy(p, f"{path}.portLevelSettings[{i}]", out, port_level=True)


def destination_rule_rules(dr: Any, namespace: str) -> Problems:
    out: Problems = []
    if dr.host:
        check_host(dr.host, "spec.host", out)
    if dr.HasField("traffic_policy"):
        _traffic_policy(dr.traffic_policy, "spec.trafficPolicy", out)
    for i, s in enumerate(dr.subsets):
        if s.name and not is_dns1123_label(s.name):
            out.append(FieldProblem(f"spec.subsets[{i}].name", f"subset name {quote(s.name)} is not a DNS-1123 label"))
        if s.HasField("traffic_policy"):
            _traffic_policy(s.traffic_policy, f"spec.subsets[{i}].trafficPolicy", out)
    check_export_to(dr.export_to, namespace, "spec.exportTo", out)
    return out
