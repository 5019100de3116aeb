"""HTTPRoute and GRPCRoute rules -> Istio VirtualService http routes, as istiod
converts them: one Istio route per match (a rule with several matches is split),
named `<ns>.<route>.<rule index>` (or the rule's name), filters mapped onto the
route's headers/redirect/rewrite/mirrors/corsPolicy, backendRefs onto weighted
destinations. Backends that do not resolve are dropped and reported; a rule left
with none answers 500, a rule whose weights are all zero 503 (as the spec says)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from istio.networking.v1alpha3 import virtual_service_pb2 as vs

from istiod_py.config.proto_yaml import parse_duration

from .refs import Grants, Registry, Resolved, resolve_backend


@dataclass
class RuleResult:
    routes: list[Any] = field(default_factory=list)  # istio HTTPRoute messages
    backend_errors: list[Resolved] = field(default_factory=list)


def _string_match(kind: str, value: str) -> Any:
    m = vs.StringMatch()
    if kind == "Exact":
        m.exact = value
    elif kind == "RegularExpression":
        m.regex = value
    else:
        m.prefix = value
    return m


def _headers(target: Any, items: Iterable[Any]) -> None:
    for h in items:
        name = str(h.name).lower()
        if name not in target:  # "subsequent entries with an equivalent header name MUST be ignored"
            target[name].CopyFrom(_string_match(h.type or "Exact", h.value))


def _http_match(m: Any) -> Any:
    out = vs.HTTPMatchRequest()
    ptype = m.path.type or "PathPrefix"
    value = m.path.value if m.path.HasField("value") else "/"
    out.uri.CopyFrom(_string_match(ptype, value))
    _headers(out.headers, m.headers)
    for q in m.query_params:
        if q.name not in out.query_params:
            out.query_params[q.name].CopyFrom(_string_match(q.type or "Exact", q.value))
    if m.method:
        out.method.exact = m.method
    return out


def _grpc_match(m: Any) -> Any:
    out = vs.HTTPMatchRequest()
    meth = m.method
    if m.HasField("method"):
        svc = meth.service if meth.HasField("service") else ""
        name = meth.method if meth.HasField("method") else ""
        if (meth.type or "Exact") == "Exact":
            if svc and name:
                out.uri.exact = f"/{svc}/{name}"
            elif svc:
                out.uri.prefix = f"/{svc}/"
            else:
                out.uri.regex = f"/[^/]+/{name}"
        else:
            out.uri.regex = f"/{svc or '[^/]+'}/{name or '[^/]+'}"
    _headers(out.headers, m.headers)
    return out


def _header_ops(target: Any, f: Any) -> None:
    for h in f.set:
        target.set.setdefault(str(h.name).lower(), h.value)
    for h in f.add:
        target.add.setdefault(str(h.name).lower(), h.value)
    target.remove.extend(f.remove)


def _mirror(route: Any, f: Any, kind: str, ns: str, grants: Grants, reg: Registry, res: RuleResult) -> None:
    r = resolve_backend(f.backend_ref, kind, ns, grants, reg)
    if not r.ok:
        res.backend_errors.append(r)
        return
    m = route.mirrors.add()
    m.destination.host = r.host
    m.destination.port.number = r.port
    if f.HasField("percent"):
        m.percentage.value = float(f.percent)
    elif f.HasField("fraction"):
        den = f.fraction.denominator if f.fraction.HasField("denominator") else 100
        m.percentage.value = 100.0 * f.fraction.numerator / den


def _redirect(route: Any, f: Any) -> None:
    red = route.redirect
    red.redirect_code = f.status_code if f.HasField("status_code") else 302
    if f.hostname:
        red.authority = f.hostname
    if f.scheme:
        red.scheme = f.scheme
    if f.HasField("port"):
        red.port = f.port
    elif not f.scheme:
        # "When empty, port (if specified) of the request is used" (differs from Istio's default).
        red.derive_port = vs.HTTPRedirect.FROM_REQUEST_PORT
    if f.HasField("path") and f.path.type == "ReplaceFullPath":
        red.uri = f.path.replace_full_path
    elif f.HasField("path"):
        # istiod's encoding; the translator turns it into Envoy's redirect prefix_rewrite.
        red.uri = "%PREFIX()%" + f.path.replace_prefix_match


def _rewrite(route: Any, f: Any) -> None:
    rw = route.rewrite
    if f.hostname:
        rw.authority = f.hostname
    if f.HasField("path"):
        if f.path.type == "ReplacePrefixMatch":
            rw.uri = f.path.replace_prefix_match or "/"
        else:
            rw.uri_regex_rewrite.match = "/.*"
            rw.uri_regex_rewrite.rewrite = f.path.replace_full_path


def _cors(route: Any, f: Any) -> None:
    c = route.cors_policy
    for o in f.allow_origins:
        m = c.allow_origins.add()
        if "*" in o:
            m.regex = "^" + ".*".join(_re_escape(p) for p in o.split("*")) + "$"
        else:
            m.exact = o
    c.allow_methods.extend(f.allow_methods)
    c.allow_headers.extend(f.allow_headers)
    c.expose_headers.extend(f.expose_headers)
    if f.max_age:
        c.max_age.seconds = f.max_age
    if f.HasField("allow_credentials"):
        c.allow_credentials.value = f.allow_credentials


def _re_escape(s: str) -> str:
    import re

    return re.escape(s)


def _seconds(text: str) -> tuple[int, int]:
    ns = parse_duration(text) or 0
    return divmod(ns, 1_000_000_000)


def convert_rule(
    rule: Any, index: int, route_kind: str, name: str, ns: str, grants: Grants, reg: Registry
) -> RuleResult:
    res = RuleResult()
    base = vs.HTTPRoute()
    base.name = rule.name or f"{ns}.{name}.{index}"
    for f in rule.filters:
        if f.type == "RequestHeaderModifier":
            _header_ops(base.headers.request, f.request_header_modifier)
        elif f.type == "ResponseHeaderModifier":
            _header_ops(base.headers.response, f.response_header_modifier)
        elif f.type == "RequestRedirect":
            _redirect(base, f.request_redirect)
        elif f.type == "URLRewrite":
            _rewrite(base, f.url_rewrite)
        elif f.type == "RequestMirror":
            _mirror(base, f.request_mirror, route_kind, ns, grants, reg, res)
        elif f.type == "CORS":
            _cors(base, f.cors)
    timeouts = getattr(rule, "timeouts", None)
    if timeouts is not None and (timeouts.backend_request or timeouts.request):
        s, n = _seconds(timeouts.backend_request or timeouts.request)
        base.timeout.seconds, base.timeout.nanos = s, n
    retry = getattr(rule, "retry", None)
    if retry is not None and rule.HasField("retry"):
        attempts = retry.attempts if retry.HasField("attempts") else 2
        base.retries.SetInParent()
        if attempts:
            base.retries.attempts = attempts
            on = ["connect-failure", "refused-stream", "unavailable", "cancelled", *(str(c) for c in retry.codes)]
            base.retries.retry_on = ",".join(on)
            if retry.backoff:
                s, n = _seconds(retry.backoff)
                base.retries.backoff.seconds, base.retries.backoff.nanos = s, n
    if not base.HasField("redirect"):
        _destinations(base, rule.backend_refs, route_kind, ns, grants, reg, res)
    matches = list(rule.matches)
    convert = _grpc_match if route_kind == "GRPCRoute" else _http_match
    if not matches:
        res.routes.append(base)
    for m in matches:
        r = vs.HTTPRoute()
        r.CopyFrom(base)
        match = convert(m)
        if match.ByteSize():
            r.match.append(match)
        res.routes.append(r)
    return res


def _destinations(
    route: Any, refs: Iterable[Any], kind: str, ns: str, grants: Grants, reg: Registry, res: RuleResult
) -> None:
    refs = list(refs)
    weights = [(b.weight if b.HasField("weight") else 1) for b in refs]
    if refs and not any(weights):
        route.direct_response.status = 503  # the spec: no backend with a weight > 0 -> 503
        return
    kept = []
    invalid_weight = 0
    for b, w in zip(refs, weights, strict=True):
        if w == 0:
            continue
        r = resolve_backend(b, kind, ns, grants, reg)
        if not r.ok:
            res.backend_errors.append(r)
            invalid_weight += w
            continue
        d = vs.HTTPRouteDestination()
        d.destination.host = r.host
        d.destination.port.number = r.port
        d.weight = w
        for f in b.filters:
            if f.type == "RequestHeaderModifier":
                _header_ops(d.headers.request, f.request_header_modifier)
            elif f.type == "ResponseHeaderModifier":
                _header_ops(d.headers.response, f.response_header_modifier)
        kept.append(d)
    if len(kept) == 1:
        kept[0].weight = 0
    route.route.extend(kept)
    if not kept:
        route.direct_response.status = 500
    elif invalid_weight:
        # The spec: the share of requests an invalid backend would get answers 500. An abort
        # of that share in front of the valid backends is that split, in Istio's terms.
        route.fault.abort.http_status = 500
        valid_weight = sum(w for w in weights if w) - invalid_weight
        route.fault.abort.percentage.value = 100.0 * invalid_weight / (invalid_weight + valid_weight)


def precedence(route: Any) -> tuple[int, int, int, int, int, int]:
    """Gateway API rule precedence (exact path, longest path, method, most headers, most
    query params), larger first; routes without a match go last."""
    if not route.match:
        return (0, 0, 0, 0, 0, 0)
    m = route.match[0]
    kind = m.uri.WhichOneof("match_type")
    value = getattr(m.uri, kind) if kind else ""
    return (
        1,
        1 if kind == "exact" else 0,
        len(value),
        1 if m.HasField("method") else 0,
        len(m.headers),
        len(m.query_params),
    )
