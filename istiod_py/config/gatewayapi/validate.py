"""Value checks the Gateway API CRDs make (kubebuilder enums, required fields, ranges),
and the fields istiod_py does not implement (rejected with a message, never ignored).

Each check returns FieldProblems located by field path, like the Istio kinds' validation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from istiod_py.config.proto_yaml import FieldProblem, parse_duration

from . import unsupported as U

Problems = list[FieldProblem]

PATH_TYPES = ("Exact", "PathPrefix", "RegularExpression")
MATCH_TYPES = ("Exact", "RegularExpression")
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
HTTP_FILTERS = (
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestMirror",
    "RequestRedirect",
    "URLRewrite",
    "CORS",
    "ExternalAuth",
    "ExtensionRef",
)
GRPC_FILTERS = ("RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror", "ExtensionRef")
# filter type -> the field that must be set with it (and no other)
FILTER_FIELDS = {
    "RequestHeaderModifier": "request_header_modifier",
    "ResponseHeaderModifier": "response_header_modifier",
    "RequestMirror": "request_mirror",
    "RequestRedirect": "request_redirect",
    "URLRewrite": "url_rewrite",
    "CORS": "cors",
    "ExternalAuth": "external_auth",
    "ExtensionRef": "extension_ref",
}
PROTOCOLS = ("HTTP", "HTTPS", "TLS", "TCP", "UDP")
TLS_MODES = ("Terminate", "Passthrough")
FROM_NAMESPACES = ("All", "Same", "Selector")
ADDRESS_TYPES = ("IPAddress", "Hostname", "NamedAddress")
REDIRECT_CODES = (301, 302, 303, 307, 308)
PATH_MODIFIERS = ("ReplaceFullPath", "ReplacePrefixMatch")


def _one_of(value: str, allowed: Iterable[str], path: str, out: Problems) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        out.append(FieldProblem(path, f"invalid value {value!r}: must be one of {', '.join(allowed)}"))


def _required(value: Any, path: str, out: Problems) -> bool:
    if value in ("", None):
        out.append(FieldProblem(path, "is required"))
        return False
    return True


def _duration(value: str, path: str, out: Problems) -> None:
    if value and parse_duration(value) is None:
        out.append(FieldProblem(path, f"invalid duration {value!r}: use Gateway API durations like 10s, 500ms or 1h"))


def _parent_refs(spec: Any, out: Problems) -> None:
    for i, p in enumerate(spec.parent_refs):
        _required(p.name, f"spec.parentRefs[{i}].name", out)
        if p.HasField("port") and not 1 <= p.port <= 65535:
            out.append(FieldProblem(f"spec.parentRefs[{i}].port", "must be between 1 and 65535"))
    if spec.use_default_gateways:
        out.append(FieldProblem("spec.useDefaultGateways", U.MSG_DEFAULT_GATEWAYS))


def _backend(ref: Any, path: str, out: Problems) -> None:
    _required(ref.name, f"{path}.name", out)
    if ref.HasField("port") and not 1 <= ref.port <= 65535:
        out.append(FieldProblem(f"{path}.port", "must be between 1 and 65535"))
    if "weight" in type(ref).DESCRIPTOR.fields_by_name and ref.HasField("weight") and not 0 <= ref.weight <= 1_000_000:
        out.append(FieldProblem(f"{path}.weight", "must be between 0 and 1000000"))


def _header_filter(f: Any, path: str, out: Problems) -> None:
    for op in ("set", "add"):
        for j, h in enumerate(getattr(f, op)):
            _required(h.name, f"{path}.{op}[{j}].name", out)


def _path_modifier(m: Any, path: str, out: Problems) -> None:
    _one_of(m.type, PATH_MODIFIERS, f"{path}.type", out)
    if m.type == "ReplaceFullPath" and not m.HasField("replace_full_path"):
        out.append(FieldProblem(f"{path}.replaceFullPath", "is required when type is ReplaceFullPath"))
    if m.type == "ReplacePrefixMatch" and not m.HasField("replace_prefix_match"):
        out.append(FieldProblem(f"{path}.replacePrefixMatch", "is required when type is ReplacePrefixMatch"))


def _filters(
    filters: Iterable[Any], allowed: tuple[str, ...], path: str, out: Problems, in_backend: bool = False
) -> None:
    for i, f in enumerate(filters):
        p = f"{path}[{i}]"
        _one_of(f.type, allowed, f"{p}.type", out)
        want = FILTER_FIELDS.get(f.type)
        for t, field in FILTER_FIELDS.items():
            if field not in type(f).DESCRIPTOR.fields_by_name:
                continue
            has = f.HasField(field)
            if t == f.type and not has and t not in ("ExtensionRef",):
                out.append(FieldProblem(f"{p}.{_camel(field)}", f"is required when type is {t}"))
            if t != f.type and has:
                out.append(FieldProblem(f"{p}.{_camel(field)}", f"must not be set when type is {f.type}"))
        if want is None:
            continue
        msg = U.FILTER_REJECTED.get(f.type)
        if msg is not None:
            out.append(FieldProblem(f"{p}.type", msg))
        if in_backend and f.type not in ("RequestHeaderModifier", "ResponseHeaderModifier"):
            out.append(FieldProblem(f"{p}.type", U.MSG_BACKEND_FILTER))
        if f.type in ("RequestHeaderModifier", "ResponseHeaderModifier"):
            _header_filter(getattr(f, want), f"{p}.{_camel(want)}", out)
        elif f.type == "RequestMirror":
            m = f.request_mirror
            _backend(m.backend_ref, f"{p}.requestMirror.backendRef", out)
            if m.HasField("percent") and m.HasField("fraction"):
                out.append(FieldProblem(f"{p}.requestMirror", "only one of 'percent' and 'fraction' may be set"))
            if m.HasField("percent") and not 0 <= m.percent <= 100:
                out.append(FieldProblem(f"{p}.requestMirror.percent", "must be between 0 and 100"))
            if m.HasField("fraction"):
                den = m.fraction.denominator if m.fraction.HasField("denominator") else 100
                if den < 1 or not 0 <= m.fraction.numerator <= den:
                    out.append(
                        FieldProblem(
                            f"{p}.requestMirror.fraction", "numerator must be between 0 and denominator (>= 1)"
                        )
                    )
        elif f.type == "RequestRedirect":
            r = f.request_redirect
            if r.scheme:
                _one_of(r.scheme, ("http", "https"), f"{p}.requestRedirect.scheme", out)
            if r.HasField("status_code") and r.status_code not in REDIRECT_CODES:
                out.append(FieldProblem(f"{p}.requestRedirect.statusCode", "must be one of 301, 302, 303, 307, 308"))
            if r.HasField("path"):
                _path_modifier(r.path, f"{p}.requestRedirect.path", out)
        elif f.type == "URLRewrite" and f.url_rewrite.HasField("path"):
            _path_modifier(f.url_rewrite.path, f"{p}.urlRewrite.path", out)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    out = head + "".join(w.capitalize() for w in rest)
    return "urlRewrite" if out == "urlRewrite" else out


def _rule_common(rule: Any, path: str, out: Problems) -> None:
    if rule.HasField("session_persistence"):
        out.append(FieldProblem(f"{path}.sessionPersistence", U.MSG_SESSION_PERSISTENCE))


def validate_httproute(spec: Any) -> Problems:
    out: Problems = []
    _parent_refs(spec, out)
    for i, rule in enumerate(spec.rules):
        rp = f"spec.rules[{i}]"
        _rule_common(rule, rp, out)
        for j, m in enumerate(rule.matches):
            mp = f"{rp}.matches[{j}]"
            if m.HasField("path"):
                ptype = m.path.type or "PathPrefix"
                _one_of(ptype, PATH_TYPES, f"{mp}.path.type", out)
                value = m.path.value if m.path.HasField("value") else "/"
                if ptype != "RegularExpression" and not value.startswith("/"):
                    out.append(FieldProblem(f"{mp}.path.value", "must be an absolute path starting with '/'"))
            for k, h in enumerate(m.headers):
                _one_of(h.type or "Exact", MATCH_TYPES, f"{mp}.headers[{k}].type", out)
                _required(h.name, f"{mp}.headers[{k}].name", out)
            for k, q in enumerate(m.query_params):
                _one_of(q.type or "Exact", MATCH_TYPES, f"{mp}.queryParams[{k}].type", out)
                _required(q.name, f"{mp}.queryParams[{k}].name", out)
            if m.method:
                _one_of(m.method, METHODS, f"{mp}.method", out)
        _filters(rule.filters, HTTP_FILTERS, f"{rp}.filters", out)
        for j, b in enumerate(rule.backend_refs):
            _backend(b, f"{rp}.backendRefs[{j}]", out)
            _filters(b.filters, HTTP_FILTERS, f"{rp}.backendRefs[{j}].filters", out, in_backend=True)
        _duration(rule.timeouts.request, f"{rp}.timeouts.request", out)
        _duration(rule.timeouts.backend_request, f"{rp}.timeouts.backendRequest", out)
        if rule.HasField("retry"):
            _duration(rule.retry.backoff, f"{rp}.retry.backoff", out)
            for k, code in enumerate(rule.retry.codes):
                if not 400 <= code <= 599:
                    out.append(FieldProblem(f"{rp}.retry.codes[{k}]", "must be between 400 and 599"))
    return out


def validate_grpcroute(spec: Any) -> Problems:
    out: Problems = []
    _parent_refs(spec, out)
    for i, rule in enumerate(spec.rules):
        rp = f"spec.rules[{i}]"
        _rule_common(rule, rp, out)
        for j, m in enumerate(rule.matches):
            mp = f"{rp}.matches[{j}]"
            if m.HasField("method"):
                mt = m.method.type or "Exact"
                _one_of(mt, MATCH_TYPES, f"{mp}.method.type", out)
                if not (m.method.HasField("service") or m.method.HasField("method")):
                    out.append(FieldProblem(f"{mp}.method", "one or both of 'service' or 'method' must be specified"))
            for k, h in enumerate(m.headers):
                _one_of(h.type or "Exact", MATCH_TYPES, f"{mp}.headers[{k}].type", out)
                _required(h.name, f"{mp}.headers[{k}].name", out)
        _filters(rule.filters, GRPC_FILTERS, f"{rp}.filters", out)
        for j, b in enumerate(rule.backend_refs):
            _backend(b, f"{rp}.backendRefs[{j}]", out)
            _filters(b.filters, GRPC_FILTERS, f"{rp}.backendRefs[{j}].filters", out, in_backend=True)
    return out


def validate_l4route(spec: Any) -> Problems:
    out: Problems = []
    _parent_refs(spec, out)
    for i, rule in enumerate(spec.rules):
        for j, b in enumerate(rule.backend_refs):
            _backend(b, f"spec.rules[{i}].backendRefs[{j}]", out)
    return out


def validate_gateway(spec: Any) -> Problems:
    out: Problems = []
    _required(spec.gateway_class_name, "spec.gatewayClassName", out)
    if not spec.listeners:
        out.append(FieldProblem("spec.listeners", "at least one listener is required"))
    names: set[str] = set()
    for i, lis in enumerate(spec.listeners):
        lp = f"spec.listeners[{i}]"
        if _required(lis.name, f"{lp}.name", out) and lis.name in names:
            out.append(FieldProblem(f"{lp}.name", f"listener name {lis.name!r} is used twice; names must be unique"))
        names.add(lis.name)
        if not 1 <= lis.port <= 65535:
            out.append(FieldProblem(f"{lp}.port", "must be between 1 and 65535"))
        if "/" not in lis.protocol:
            _one_of(lis.protocol, PROTOCOLS, f"{lp}.protocol", out)
        if lis.HasField("tls") and lis.tls.mode:
            _one_of(lis.tls.mode, TLS_MODES, f"{lp}.tls.mode", out)
        terminate = lis.HasField("tls") and (lis.tls.mode or "Terminate") == "Terminate"
        if terminate and not lis.tls.certificate_refs and not lis.tls.options:
            out.append(FieldProblem(f"{lp}.tls", "certificateRefs or options must be specified when mode is Terminate"))
        ns = lis.allowed_routes.namespaces
        if getattr(ns, "from"):
            _one_of(getattr(ns, "from"), FROM_NAMESPACES, f"{lp}.allowedRoutes.namespaces.from", out)
        if getattr(ns, "from") == "Selector" and not ns.HasField("selector"):
            out.append(FieldProblem(f"{lp}.allowedRoutes.namespaces.selector", "is required when from is Selector"))
        for k, e in enumerate(ns.selector.match_expressions):
            _one_of(
                e.operator,
                ("In", "NotIn", "Exists", "DoesNotExist"),
                f"{lp}.allowedRoutes.namespaces.selector.matchExpressions[{k}].operator",
                out,
            )
    for i, a in enumerate(spec.addresses):
        if a.type and "/" not in a.type:
            _one_of(a.type, ADDRESS_TYPES, f"spec.addresses[{i}].type", out)
    for field, msg in U.GATEWAY_REJECTED.items():
        if spec.HasField(field) if field != "default_scope" else spec.default_scope:
            out.append(FieldProblem(f"spec.{_camel(field)}", msg))
    return out


def validate_gatewayclass(spec: Any) -> Problems:
    out: Problems = []
    _required(spec.controller_name, "spec.controllerName", out)
    return out


def validate_referencegrant(spec: Any) -> Problems:
    out: Problems = []
    for i, f in enumerate(getattr(spec, "from")):
        _required(f.kind, f"spec.from[{i}].kind", out)
        _required(f.namespace, f"spec.from[{i}].namespace", out)
    for i, t in enumerate(spec.to):
        _required(t.kind, f"spec.to[{i}].kind", out)
    if not getattr(spec, "from"):
        out.append(FieldProblem("spec.from", "at least one entry is required"))
    if not spec.to:
        out.append(FieldProblem("spec.to", "at least one entry is required"))
    return out


VALIDATORS: dict[str, Callable[[Any], Problems]] = {
    "GatewayClass": validate_gatewayclass,
    "Gateway": validate_gateway,
    "HTTPRoute": validate_httproute,
    "GRPCRoute": validate_grpcroute,
    "ReferenceGrant": validate_referencegrant,
    "TCPRoute": validate_l4route,
    "TLSRoute": validate_l4route,
}
