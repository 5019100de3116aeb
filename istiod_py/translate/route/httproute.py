"""VirtualService HTTPRoute -> Envoy routes: match, destinations and weights,
headers, rewrite, redirect, direct response. Timeouts, retries, fault, cors and
mirroring are route features in their own modules (see features.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3.route_components_pb2 import Route
from envoy.type.matcher.v3 import regex_pb2, string_pb2

from istiod_py.model import Proxy, labels_match

from .. import naming
from ..context import PushContext, fqdn
from ..features import RouteInput, apply_route_features
from ..provenance import note_http_route
from . import gateway_semantics


def regex(pattern: str) -> regex_pb2.RegexMatcher:
    return regex_pb2.RegexMatcher(regex=pattern)


def string_matcher(sm: Any, ignore_case: bool = False) -> string_pb2.StringMatcher:
    kind = sm.WhichOneof("match_type")
    if kind == "exact":
        return string_pb2.StringMatcher(exact=sm.exact, ignore_case=ignore_case)
    if kind == "prefix":
        return string_pb2.StringMatcher(prefix=sm.prefix, ignore_case=ignore_case)
    return string_pb2.StringMatcher(safe_regex=regex(sm.regex))


def _header(name: str, sm: Any, invert: bool = False) -> rc.HeaderMatcher:
    hm = rc.HeaderMatcher(name=name, invert_match=invert)
    if sm.WhichOneof("match_type") is None:
        hm.present_match = True
    else:
        hm.string_match.CopyFrom(string_matcher(sm))
    return hm


def route_match(m: Any) -> rc.RouteMatch:
    out = rc.RouteMatch()
    if m is None or not m.HasField("uri"):
        out.prefix = "/"
    else:
        kind = m.uri.WhichOneof("match_type")
        if kind == "exact":
            out.path = m.uri.exact
        elif kind == "prefix":
            out.prefix = m.uri.prefix
        elif kind == "regex":
            out.safe_regex.CopyFrom(regex(m.uri.regex))
        else:
            out.prefix = "/"
        if m.ignore_uri_case:
            out.case_sensitive.value = False
    if m is None:
        return out
    for name, sm in sorted(m.headers.items()):
        out.headers.append(_header(name.lower(), sm))
    for name, sm in sorted(m.without_headers.items()):
        out.headers.append(_header(name.lower(), sm, invert=True))
    for field, header in (("method", ":method"), ("authority", ":authority"), ("scheme", ":scheme")):
        if m.HasField(field):
            out.headers.append(_header(header, getattr(m, field)))
    for name, sm in sorted(m.query_params.items()):
        qm = rc.QueryParameterMatcher(name=name)
        if sm.WhichOneof("match_type") is None:
            qm.present_match = True
        else:
            qm.string_match.CopyFrom(string_matcher(sm))
        out.query_parameters.append(qm)
    return out


def match_applies(m: Any, proxy: Proxy, port: int, gateway: str, vs_ns: str) -> bool:
    """Match conditions istiod evaluates while building config, not in Envoy."""
    if m.port and port and m.port != port:
        return False
    if m.source_labels and not labels_match(dict(m.source_labels), proxy.labels):
        return False
    if m.source_namespace and m.source_namespace != proxy.namespace:
        return False
    if m.gateways:
        names = {g if g == "mesh" or "/" in g else f"{vs_ns}/{g}" for g in m.gateways}
        if gateway not in names:
            return False
    return True


def _is_authority(name: str) -> bool:
    return name.lower() in ("host", ":authority")


def _is_internal(name: str) -> bool:
    # Envoy rejects (NACKs) header mutations of pseudo-headers and Host.
    return name.startswith(":") or name.lower() == "host"


def header_ops(target: Any, ops: Any, request: bool) -> str:
    """Istio Headers.HeaderOperations -> Envoy headers_to_add/remove on `target`.

    Returns the authority a request `set`/`add` of Host or :authority asks for
    (istiod turns it into a host rewrite; Envoy refuses it as a header), or ""."""
    add = target.request_headers_to_add if request else target.response_headers_to_add
    remove = target.request_headers_to_remove if request else target.response_headers_to_remove
    found: dict[str, str] = {}
    for kind, values, action in (
        ("set", ops.set, base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD),
        ("add", ops.add, base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD),
    ):
        for k, v in sorted(values.items()):
            if _is_authority(k):
                found[kind] = v
            if _is_internal(k):
                continue
            add.append(base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=k, value=v), append_action=action))
    remove.extend(h for h in ops.remove if not _is_internal(h))
    # `set` wins over `add`, as in istiod.
    return found.get("set", found.get("add", "")) if request else ""


def apply_headers(target: Any, headers: Any) -> str:
    """Both directions of an Istio `headers`; returns the requested authority, or ""."""
    if headers is None:
        return ""
    authority = ""
    if headers.HasField("request"):
        authority = header_ops(target, headers.request, True)
    if headers.HasField("response"):
        header_ops(target, headers.response, False)
    return authority


def destination_cluster(ctx: PushContext, dest: Any, vs_ns: str, listener_port: int) -> str:
    host = fqdn(dest.host, vs_ns, ctx.domain)
    port = dest.port.number if dest.HasField("port") else 0
    if not port:
        svc = ctx.state.services.get(host)
        if svc is not None and len(svc.ports) == 1:
            port = svc.ports[0].number
        else:
            port = listener_port
    return naming.outbound_cluster(port, host, dest.subset)


_REDIRECT_CODES: Mapping[int, int] = {
    301: rc.RedirectAction.MOVED_PERMANENTLY,
    302: rc.RedirectAction.FOUND,
    303: rc.RedirectAction.SEE_OTHER,
    307: rc.RedirectAction.TEMPORARY_REDIRECT,
    308: rc.RedirectAction.PERMANENT_REDIRECT,
}


def _route_action(inp: RouteInput, http: Any, match: Any, route: Route) -> None:
    ctx, vs_ns = inp.ctx, inp.vs.meta.namespace if inp.vs else inp.proxy_ns
    action = route.route
    dests = list(http.route)
    dest_authority = ""
    if len(dests) == 1:
        action.cluster = destination_cluster(ctx, dests[0].destination, vs_ns, inp.port)
        if dests[0].HasField("headers"):
            dest_authority = apply_headers(route, dests[0].headers)
    else:
        for d in dests:
            wc = action.weighted_clusters.clusters.add()
            wc.name = destination_cluster(ctx, d.destination, vs_ns, inp.port)
            wc.weight.value = d.weight
            if d.HasField("headers"):
                authority = apply_headers(wc, d.headers)
                if authority:
                    wc.host_rewrite_literal = authority
    if http.HasField("rewrite"):
        rw = http.rewrite
        if rw.uri:
            action.prefix_rewrite = rw.uri
        if rw.HasField("uri_regex_rewrite"):
            action.regex_rewrite.pattern.regex = rw.uri_regex_rewrite.match
            action.regex_rewrite.substitution = rw.uri_regex_rewrite.rewrite
        if rw.authority:
            action.host_rewrite_literal = rw.authority
    if dest_authority:
        action.host_rewrite_literal = dest_authority
    action.timeout.seconds = 0  # Istio disables Envoy's 15 s default; `timeout` overrides


def _redirect(http: Any, route: Route, listener_port: int) -> None:
    r = http.redirect
    red = route.redirect
    if r.uri:
        red.path_redirect = r.uri
    if r.authority:
        red.host_redirect = r.authority
    kind = r.WhichOneof("redirect_port")
    if kind == "port" and r.port:
        red.port_redirect = r.port
    elif kind == "derive_port" and r.derive_port == 1 and listener_port:  # FROM_REQUEST_PORT
        # Envoy cannot derive it, but every route is built for one listener port.
        red.port_redirect = listener_port
    if r.scheme:
        red.scheme_redirect = r.scheme
    if r.redirect_code:
        red.response_code = _REDIRECT_CODES.get(r.redirect_code, rc.RedirectAction.MOVED_PERMANENTLY)


def _direct(http: Any, route: Route) -> None:
    d = http.direct_response
    route.direct_response.status = d.status
    if d.HasField("body"):
        kind = d.body.WhichOneof("specifier")
        if kind == "string":
            route.direct_response.body.inline_string = d.body.string
        elif kind == "bytes":
            route.direct_response.body.inline_bytes = d.body.bytes


def build_routes(inp: RouteInput, proxy: Proxy) -> list[Route]:
    """All Envoy routes of one Istio HTTPRoute: one per applicable match (or one
    catch-all when it has no match). An HTTPRoute whose matches all filter out
    (port, sourceLabels, gateways) contributes none."""
    http = inp.http
    vs_ns = inp.vs.meta.namespace if inp.vs else inp.proxy_ns
    matches = list(http.match) or [None]
    out = []
    for i, m in enumerate(matches):
        if m is not None and not match_applies(m, proxy, inp.port, inp.gateway, vs_ns):
            continue
        route = Route(match=route_match(m))
        name = (m.name if m is not None and m.name else "") or http.name
        if name:
            route.name = name if len(matches) == 1 else f"{name}.{i}" if not (m and m.name) else name
        if http.HasField("redirect"):
            _redirect(http, route, inp.port)
        elif http.HasField("direct_response"):
            _direct(http, route)
        else:
            _route_action(inp, http, m, route)
        if http.HasField("headers"):
            authority = apply_headers(route, http.headers)
            # rewrite.authority and a destination's own Host header win.
            if authority and route.HasField("route") and not route.route.host_rewrite_literal:
                route.route.host_rewrite_literal = authority
        if gateway_semantics.uses_gateway_semantics(inp.vs):
            gateway_semantics.apply(route)
        apply_route_features(inp, route)
        if inp.vs is not None:
            route.decorator.operation = route_operation(route, inp.vs.meta.name, inp.port)
            config = naming.config_path("virtual-service", inp.vs.meta.namespace, inp.vs.meta.name)
            route.metadata.filter_metadata["istio"].update({"config": config})
        out.append(route)
    if out and inp.vs is not None:
        note_http_route(inp.ctx, inp.vs, http)  # provenance: the field the routes came from
    return out


def route_operation(route: Route, vs_name: str, port: int) -> str:
    """istiod's trace operation name for a route (getRouteOperation): the
    destination `host:port` when the route has one cluster, else the
    VirtualService `name:listenerPort`, followed by the path it matches."""
    m = route.match
    kind = m.WhichOneof("path_specifier")
    path = "/*"
    if kind == "prefix":
        path = m.prefix + "*"
    elif kind == "path":
        path = m.path
    elif kind == "safe_regex":
        path = m.safe_regex.regex
    parsed = naming.parse_cluster(route.route.cluster) if route.HasField("route") else None
    if parsed is not None:
        return f"{parsed[3]}:{parsed[1]}{path}"
    return f"{vs_name}:{port}{path}"


def default_route(inp: RouteInput, cluster: str) -> Route:
    route = Route(name="default", match=rc.RouteMatch(prefix="/"))
    route.route.cluster = cluster
    route.route.timeout.seconds = 0
    apply_route_features(inp, route)
    route.decorator.operation = route_operation(route, "", inp.port)
    return route
