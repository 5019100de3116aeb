"""Semantic validation of Istio resources, after the schema check, as Istio's webhook does it.

Each validator takes a typed spec and returns FieldProblems with json-style paths;
`validate_config` wraps them as ConfigErrors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from istio.networking.v1alpha3 import (
    destination_rule_pb2 as dr_pb,
)
from istio.networking.v1alpha3 import (
    gateway_pb2 as gw_pb,
)
from istio.networking.v1alpha3 import (
    service_entry_pb2 as se_pb,
)
from istio.networking.v1alpha3 import (
    virtual_service_pb2 as vs_pb,
)

from istiod_py.config.istio_rules import destination_rule_rules, virtual_service_rules
from istiod_py.config.istio_rules_services import (
    gateway_rules,
    request_authentication_rules,
    service_entry_rules,
    sidecar_rules,
    workload_entry_rules,
)
from istiod_py.config.model import Config, ConfigError, quote
from istiod_py.config.proto_yaml import FieldProblem
from istiod_py.config.rules import check_regex, is_ip
from istiod_py.config.telemetry_validation import validate_telemetry
from istiod_py.config.unsupported import check_unsupported

Problems = list[FieldProblem]
_PORT_MAX = 65535
# gRPC status names Istio accepts in fault.abort.grpcStatus (translate/traffic/fault.py maps them to codes).
GRPC_STATUS_NAMES = frozenset(
    {
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    }
)


def _port_ok(n: int) -> bool:
    return 1 <= n <= _PORT_MAX


def _check_regex(pattern: str, path: str, out: Problems) -> None:
    check_regex(pattern, path, out)  # RE2, as Envoy compiles it


def _check_string_match(m: Any, path: str, out: Problems) -> None:
    if m.WhichOneof("match_type") == "regex":
        _check_regex(m.regex, f"{path}.regex", out)


# VirtualService ----------------------------------------------------------------------------


def _destination(d: vs_pb.Destination, path: str, out: Problems) -> None:
    if not d.host:
        out.append(FieldProblem(f"{path}.host", "destination host is required: name a service, e.g. reviews"))
    if d.HasField("port") and not _port_ok(d.port.number):
        out.append(FieldProblem(f"{path}.port.number", f"port {d.port.number} must be in 1-65535"))


def _weights(routes: Iterable[Any], path: str, out: Problems) -> None:
    routes = list(routes)
    for i, r in enumerate(routes):
        if not 0 <= r.weight <= 100:
            out.append(FieldProblem(f"{path}[{i}].weight", f"weight {r.weight} must be between 0 and 100"))
    if len(routes) > 1 and sum(r.weight for r in routes) == 0:
        out.append(FieldProblem(path, "with several destinations, give them weights that add up to 100"))


def _http_match(m: vs_pb.HTTPMatchRequest, path: str, out: Problems) -> None:
    for name in ("uri", "scheme", "method", "authority"):
        if m.HasField(name):
            _check_string_match(getattr(m, name), f"{path}.{name}", out)
    for field_name, json_name in (
        ("headers", "headers"),
        ("query_params", "queryParams"),
        ("without_headers", "withoutHeaders"),
    ):
        for key, sm in getattr(m, field_name).items():
            _check_string_match(sm, f"{path}.{json_name}[{key}]", out)
    if m.port and not _port_ok(m.port):
        out.append(FieldProblem(f"{path}.port", f"port {m.port} must be in 1-65535"))


def _http_route(r: vs_pb.HTTPRoute, path: str, out: Problems, in_delegate: bool = False) -> None:
    if r.HasField("delegate"):
        _delegating_route(r, path, out, in_delegate)
    else:
        actions = [n for n in ("route", "redirect", "direct_response") if _has(r, n)]
        if not actions:
            # A delegate's routes cannot delegate again.
            needs = (
                "route, redirect or directResponse" if in_delegate else "route, redirect, directResponse or delegate"
            )
            out.append(FieldProblem(path, f"an HTTP route needs one of {needs}"))
        elif len(actions) > 1:
            names = " and ".join(_json(vs_pb.HTTPRoute, a) for a in actions)
            out.append(FieldProblem(path, f"{names} are mutually exclusive: keep only one"))
    if r.HasField("redirect") and r.HasField("rewrite"):
        out.append(FieldProblem(f"{path}.rewrite", "rewrite cannot be used with redirect"))
    for i, m in enumerate(r.match):
        _http_match(m, f"{path}.match[{i}]", out)
    for i, d in enumerate(r.route):
        if not d.HasField("destination"):
            out.append(FieldProblem(f"{path}.route[{i}].destination", "destination is required"))
        else:
            _destination(d.destination, f"{path}.route[{i}].destination", out)
    _weights(r.route, f"{path}.route", out)
    if r.HasField("retries") and r.retries.attempts < 0:
        out.append(FieldProblem(f"{path}.retries.attempts", "attempts cannot be negative"))
    if r.HasField("mirror"):
        _destination(r.mirror, f"{path}.mirror", out)
    if r.HasField("mirror_percentage") and not 0 <= r.mirror_percentage.value <= 100:
        out.append(FieldProblem(f"{path}.mirrorPercentage.value", "must be between 0 and 100"))
    if r.HasField("fault"):
        _fault(r.fault, f"{path}.fault", out)
    if r.HasField("rewrite") and r.rewrite.HasField("uri_regex_rewrite"):
        _check_regex(r.rewrite.uri_regex_rewrite.match, f"{path}.rewrite.uriRegexRewrite.match", out)
    if r.HasField("direct_response") and not 200 <= r.direct_response.status <= 599:
        out.append(FieldProblem(f"{path}.directResponse.status", "status must be an HTTP status code 200-599"))


def _delegating_route(r: vs_pb.HTTPRoute, path: str, out: Problems, in_delegate: bool) -> None:
    """Istio's rules for `delegate`: only in a root VirtualService (one level of
    delegation), and instead of route and redirect (the delegate's routes act)."""
    if in_delegate:
        out.append(
            FieldProblem(
                f"{path}.delegate",
                "a delegate VirtualService (no hosts) cannot delegate again: only one level of delegation; "
                "give this route a route, redirect or directResponse",
            )
        )
        return
    for name in ("route", "redirect"):
        if _has(r, name):
            out.append(
                FieldProblem(
                    f"{path}.{name}",
                    f"an HTTP route with delegate must not have {name}: the delegate VirtualService's routes decide",
                )
            )
    if not r.delegate.name:
        out.append(FieldProblem(f"{path}.delegate.name", "the delegate VirtualService's name is required"))


def _fault(f: vs_pb.HTTPFaultInjection, path: str, out: Problems) -> None:
    if not f.HasField("delay") and not f.HasField("abort"):
        out.append(FieldProblem(path, "a fault needs a delay or an abort"))
    for name in ("delay", "abort"):
        if f.HasField(name) and getattr(f, name).HasField("percentage"):
            value = getattr(f, name).percentage.value
            if not 0 <= value <= 100:
                out.append(FieldProblem(f"{path}.{name}.percentage.value", "must be between 0 and 100"))
    abort_status = f.abort.http_status if f.abort.WhichOneof("error_type") == "http_status" else 200
    if not 200 <= abort_status <= 599:
        out.append(FieldProblem(f"{path}.abort.httpStatus", "must be an HTTP status code 200-599"))
    if f.HasField("delay") and f.delay.WhichOneof("http_delay_type") is None:
        out.append(FieldProblem(f"{path}.delay.fixedDelay", "fixedDelay is required, e.g. 5s"))
    abort_kind = f.abort.WhichOneof("error_type") if f.HasField("abort") else ""
    if abort_kind is None:
        out.append(FieldProblem(f"{path}.abort", "an abort needs httpStatus or grpcStatus"))
    elif abort_kind == "grpc_status" and f.abort.grpc_status.upper() not in GRPC_STATUS_NAMES:
        out.append(
            FieldProblem(
                f"{path}.abort.grpcStatus",
                f"unknown gRPC status {quote(f.abort.grpc_status)}: use a name such as UNAVAILABLE or NOT_FOUND",
            )
        )


def _l4_routes(routes: Iterable[Any], path: str, out: Problems) -> None:
    for i, r in enumerate(routes):
        if not r.route:
            out.append(FieldProblem(f"{path}[{i}].route", "at least one route destination is required"))
        for j, d in enumerate(r.route):
            _destination(d.destination, f"{path}[{i}].route[{j}].destination", out)
        _weights(r.route, f"{path}[{i}].route", out)


def validate_virtual_service(vs: vs_pb.VirtualService) -> Problems:
    out: Problems = []
    is_delegate = not vs.hosts
    extra = [name for name in ("gateways", "tls", "tcp") if getattr(vs, name)]
    if is_delegate and extra:
        # Istio: a VirtualService without hosts is a delegate, which has only http routes and no gateways.
        out.append(
            FieldProblem(
                "spec.hosts",
                "hosts is required: a VirtualService without hosts is a delegate, and a delegate must have no "
                f"gateways, tls or tcp routes (found {', '.join(extra)})",
            )
        )
    elif is_delegate and not vs.http:
        out.append(FieldProblem("spec.hosts", "hosts is required"))
    for i, h in enumerate(vs.hosts):
        if not h:
            out.append(FieldProblem(f"spec.hosts[{i}]", "host cannot be empty"))
    if not (vs.http or vs.tls or vs.tcp):
        out.append(FieldProblem("spec", "at least one of http, tls or tcp routes is required"))
    for i, r in enumerate(vs.http):
        _http_route(r, f"spec.http[{i}]", out, in_delegate=is_delegate)
    for i, t in enumerate(vs.tls):
        if not t.match:
            out.append(FieldProblem(f"spec.tls[{i}].match", "a TLS route needs at least one match with sniHosts"))
        for j, m in enumerate(t.match):
            if not m.sni_hosts:
                out.append(FieldProblem(f"spec.tls[{i}].match[{j}].sniHosts", "sniHosts is required"))
    _l4_routes(vs.tls, "spec.tls", out)
    _l4_routes(vs.tcp, "spec.tcp", out)
    return out


# DestinationRule ---------------------------------------------------------------------------


def _traffic_policy(tp: dr_pb.TrafficPolicy, path: str, out: Problems) -> None:
    if tp.HasField("outlier_detection"):
        od = tp.outlier_detection
        if not 0 <= od.max_ejection_percent <= 100:
            out.append(FieldProblem(f"{path}.outlierDetection.maxEjectionPercent", "must be between 0 and 100"))
    tls = tp.tls
    has_cert = tls.credential_name or (tls.client_certificate and tls.private_key)
    if tls.mode == dr_pb.ClientTLSSettings.MUTUAL and not has_cert:
        out.append(FieldProblem(f"{path}.tls", "MUTUAL needs credentialName or clientCertificate and privateKey"))
    for i, p in enumerate(tp.port_level_settings):
        if not p.HasField("port") or not _port_ok(p.port.number):
            out.append(FieldProblem(f"{path}.portLevelSettings[{i}].port.number", "a port number 1-65535 is required"))


def validate_destination_rule(dr: dr_pb.DestinationRule) -> Problems:
    out: Problems = []
    if not dr.host:
        out.append(FieldProblem("spec.host", "host is required: the service this rule applies to, e.g. reviews"))
    if dr.HasField("traffic_policy"):
        _traffic_policy(dr.traffic_policy, "spec.trafficPolicy", out)
    seen: set[str] = set()
    for i, s in enumerate(dr.subsets):
        if not s.name:
            out.append(FieldProblem(f"spec.subsets[{i}].name", "subset name is required"))
        elif s.name in seen:
            out.append(FieldProblem(f"spec.subsets[{i}].name", f"duplicate subset name {quote(s.name)}"))
        seen.add(s.name)
        if s.HasField("traffic_policy"):
            _traffic_policy(s.traffic_policy, f"spec.subsets[{i}].trafficPolicy", out)
    return out


# Gateway -----------------------------------------------------------------------------------


def validate_gateway(gw: gw_pb.Gateway) -> Problems:
    out: Problems = []
    if not gw.servers:
        out.append(FieldProblem("spec.servers", "at least one server is required"))
    for i, s in enumerate(gw.servers):
        path = f"spec.servers[{i}]"
        if not s.HasField("port"):
            out.append(FieldProblem(f"{path}.port", "port is required (number, protocol, name)"))
        else:
            if not _port_ok(s.port.number):
                out.append(FieldProblem(f"{path}.port.number", "a port number 1-65535 is required"))
            if not s.port.protocol:
                out.append(FieldProblem(f"{path}.port.protocol", "protocol is required, e.g. HTTP or HTTPS"))
        if not s.hosts:
            out.append(FieldProblem(f"{path}.hosts", 'at least one host is required, e.g. "*"'))
        tls_protocols = ("HTTPS", "TLS")
        mode = s.tls.mode
        needs_cert = mode in (gw_pb.ServerTLSSettings.SIMPLE, gw_pb.ServerTLSSettings.MUTUAL)
        if s.port.protocol.upper() in tls_protocols and not s.HasField("tls"):
            out.append(FieldProblem(f"{path}.tls", f"{s.port.protocol} servers need tls settings"))
        elif needs_cert and not (
            s.tls.credential_name or s.tls.credential_names or s.tls.server_certificate or s.tls.tls_certificates
        ):
            out.append(FieldProblem(f"{path}.tls", "SIMPLE/MUTUAL TLS needs credentialName or serverCertificate"))
    return out


# ServiceEntry / WorkloadEntry -----------------------------------------------------------------


def _is_ip(text: str) -> bool:
    return is_ip(text)


def validate_service_entry(se: se_pb.ServiceEntry) -> Problems:
    out: Problems = []
    if not se.hosts:
        out.append(FieldProblem("spec.hosts", "at least one host is required"))
    names: set[str] = set()
    for i, p in enumerate(se.ports):
        if not _port_ok(p.number):
            out.append(FieldProblem(f"spec.ports[{i}].number", "a port number 1-65535 is required"))
        if p.name in names:
            out.append(FieldProblem(f"spec.ports[{i}].name", f"duplicate port name {quote(p.name)}"))
        names.add(p.name)
    if not se.ports and se.resolution != se_pb.ServiceEntry.NONE:
        out.append(FieldProblem("spec.ports", "ports are required unless resolution is NONE"))
    if se.endpoints and se.HasField("workload_selector"):
        out.append(FieldProblem("spec.workloadSelector", "use either endpoints or workloadSelector, not both"))
    for i, ep in enumerate(se.endpoints):
        path = f"spec.endpoints[{i}]"
        if se.resolution == se_pb.ServiceEntry.STATIC and not (_is_ip(ep.address) or ep.address.startswith("unix://")):
            out.append(
                FieldProblem(f"{path}.address", f"STATIC resolution needs IP addresses, got {quote(ep.address)}")
            )
        if se.resolution == se_pb.ServiceEntry.NONE and se.endpoints:
            out.append(FieldProblem(f"{path}", "endpoints are not allowed with resolution NONE"))
            break
        if not ep.address and not ep.network:
            out.append(FieldProblem(f"{path}.address", "address is required"))
        for name, port in ep.ports.items():
            if not _port_ok(port):
                out.append(FieldProblem(f"{path}.ports[{name}]", "port must be in 1-65535"))
    if se.resolution == se_pb.ServiceEntry.DNS_ROUND_ROBIN and len(se.endpoints) > 1:
        out.append(FieldProblem("spec.endpoints", "DNS_ROUND_ROBIN allows at most one endpoint"))
    return out


def validate_workload_entry(we: Any) -> Problems:
    out: Problems = []
    if not we.address and not we.network:
        out.append(FieldProblem("spec.address", "address is required (or network, for a remote-network entry)"))
    if we.address.startswith("unix://") and we.ports:
        out.append(FieldProblem("spec.ports", "a unix:// address cannot have ports"))
    for name, port in we.ports.items():
        if not _port_ok(port):
            out.append(FieldProblem(f"spec.ports[{name}]", "port must be in 1-65535"))
    return out


# Sidecar -----------------------------------------------------------------------------------


def validate_sidecar(sc: Any) -> Problems:
    out: Problems = []
    for i, ing in enumerate(sc.ingress):
        if not ing.HasField("port") or not _port_ok(ing.port.number):
            out.append(FieldProblem(f"spec.ingress[{i}].port.number", "a port number 1-65535 is required"))
    for i, eg in enumerate(sc.egress):
        if not eg.hosts:
            out.append(FieldProblem(f"spec.egress[{i}].hosts", 'hosts is required, e.g. "./*" or "istio-system/*"'))
        for j, h in enumerate(eg.hosts):
            if "/" not in h:
                out.append(
                    FieldProblem(
                        f"spec.egress[{i}].hosts[{j}]", f"{quote(h)} must be namespace/dnsName, e.g. ./{h[:60]}"
                    )
                )
    return out


# Security ----------------------------------------------------------------------------------


def _selector_conflict(policy: Any, out: Problems) -> None:
    if policy.HasField("selector") and (policy.HasField("targetRef") or policy.targetRefs):
        out.append(FieldProblem("spec.selector", "set either selector or targetRef(s), not both"))


def validate_peer_authentication(pa: Any) -> Problems:
    out: Problems = []
    if pa.port_level_mtls and not pa.HasField("selector"):
        out.append(FieldProblem("spec.portLevelMtls", "portLevelMtls needs a workload selector"))
    for port in pa.port_level_mtls:
        if not _port_ok(port):
            out.append(FieldProblem(f"spec.portLevelMtls[{port}]", "port must be in 1-65535"))
    return out


def validate_authorization_policy(ap: Any) -> Problems:
    out: Problems = []
    _selector_conflict(ap, out)
    custom = ap.action == ap.CUSTOM
    if custom and not ap.provider.name:
        out.append(FieldProblem("spec.provider.name", "the CUSTOM action needs a provider name"))
    if not custom and ap.HasField("provider"):
        out.append(FieldProblem("spec.provider", "provider is only allowed with action CUSTOM"))
    for i, rule in enumerate(ap.rules):
        path = f"spec.rules[{i}]"
        for j, f in enumerate(getattr(rule, "from")):
            if not f.HasField("source") or not f.source.ListFields():
                out.append(FieldProblem(f"{path}.from[{j}].source", "source must set at least one field"))
        for j, t in enumerate(rule.to):
            if not t.HasField("operation") or not t.operation.ListFields():
                out.append(FieldProblem(f"{path}.to[{j}].operation", "operation must set at least one field"))
            for k, port in enumerate([*t.operation.ports, *t.operation.not_ports]):
                if not port.isdigit() or not _port_ok(int(port)):
                    out.append(FieldProblem(f"{path}.to[{j}].operation.ports[{k}]", f"invalid port {quote(port)}"))
        for j, c in enumerate(rule.when):
            if not c.key:
                out.append(FieldProblem(f"{path}.when[{j}].key", "key is required"))
            if not c.values and not c.not_values:
                out.append(FieldProblem(f"{path}.when[{j}]", "set values or notValues"))
    return out


def validate_request_authentication(ra: Any) -> Problems:
    out: Problems = []
    _selector_conflict(ra, out)
    issuers: set[str] = set()
    for i, rule in enumerate(ra.jwt_rules):
        path = f"spec.jwtRules[{i}]"
        if not rule.issuer:
            out.append(FieldProblem(f"{path}.issuer", "issuer is required"))
        elif rule.issuer in issuers:
            out.append(FieldProblem(f"{path}.issuer", f"duplicate issuer {quote(rule.issuer)}"))
        issuers.add(rule.issuer)
        if rule.jwks_uri and not rule.jwks_uri.startswith(("http://", "https://")):
            out.append(FieldProblem(f"{path}.jwksUri", "jwksUri must be an http(s) URL"))
        for j, h in enumerate(rule.from_headers):
            if not h.name:
                out.append(FieldProblem(f"{path}.fromHeaders[{j}].name", "header name is required"))
    return out


def validate_envoy_filter(ef: Any) -> Problems:
    out: Problems = []
    for i, p in enumerate(ef.config_patches):
        path = f"spec.configPatches[{i}]"
        if p.apply_to == 0:
            out.append(FieldProblem(f"{path}.applyTo", "applyTo is required"))
        if not p.HasField("patch") or p.patch.operation == 0:
            out.append(FieldProblem(f"{path}.patch.operation", "patch operation is required"))
    return out


def _has(msg: Any, name: str) -> bool:
    value = getattr(msg, name)
    return len(value) > 0 if hasattr(value, "__len__") and not hasattr(value, "ListFields") else msg.HasField(name)


def _json(message: Any, field_name: str) -> str:
    return str(message.DESCRIPTOR.fields_by_name[field_name].json_name)


VALIDATORS: dict[str, Callable[[Any], Problems]] = {
    "VirtualService": validate_virtual_service,
    "DestinationRule": validate_destination_rule,
    "Gateway": validate_gateway,
    "ServiceEntry": validate_service_entry,
    "WorkloadEntry": validate_workload_entry,
    "Sidecar": validate_sidecar,
    "EnvoyFilter": validate_envoy_filter,
    "PeerAuthentication": validate_peer_authentication,
    "AuthorizationPolicy": validate_authorization_policy,
    "RequestAuthentication": validate_request_authentication,
    "Telemetry": validate_telemetry,
}


# Istio's own rules (istio_rules*.py), after the structural checks above.
ISTIO_RULES: dict[str, Callable[[Any, str], Problems]] = {
    "VirtualService": virtual_service_rules,
    "DestinationRule": destination_rule_rules,
    "Gateway": gateway_rules,
    "ServiceEntry": service_entry_rules,
    "WorkloadEntry": workload_entry_rules,
    "Sidecar": sidecar_rules,
    "RequestAuthentication": request_authentication_rules,
}


def validate_config(config: Config) -> list[ConfigError]:
    validator = VALIDATORS.get(config.meta.kind)
    if validator is None:
        return []
    m = config.meta
    rules = ISTIO_RULES.get(m.kind)
    problems = validator(config.spec)
    if rules is not None:
        problems += rules(config.spec, m.namespace)
    # Then every set field istiod_py does not implement (unsupported.py): rejected, never ignored.
    problems += check_unsupported(m.kind, config.spec, m.namespace)
    return [ConfigError(m.source, m.doc_index, p.message, m.kind, m.namespace, m.name, p.path) for p in problems]
