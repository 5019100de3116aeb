"""VirtualService: which fields istiod_py implements, and load-time rejection of the rest."""

from __future__ import annotations

from typing import Any

from istio.networking.v1alpha3 import virtual_service_pb2 as vs_pb

from istiod_py.config.proto_yaml import FieldProblem

from .support import (
    DELEGATE,
    HTTPROUTE,
    L4,
    NOT_YET,
    TP,
    WARN_STAT_PREFIX,
    Problems,
    Support,
    T,
    _p,
    _r,
    _reject,
    _s,
    _w,
)

MSG_EXPONENTIAL_DELAY = "not supported by istiod_py (istiod does not implement it either); use fixedDelay"
MSG_HTTP2_ERROR = "not supported by istiod_py (istiod does not implement it either); use httpStatus or grpcStatus"
MSG_SOURCE_SUBNET = "not supported by istiod_py; remove it"
MSG_L4_AT_GATEWAY = (
    f"{NOT_YET} on gateways (gateway tls/tcp routes match only port, gateways and sniHosts); "
    "set the match's gateways to [mesh] or remove the field"
)
MSG_VS_EXPORT_TO_GATEWAY = (
    f"{NOT_YET} for a VirtualService bound to a gateway in a namespace it is not exported to "
    "(gateways see every VirtualService bound to them); export it to the gateway's namespace or remove exportTo"
)

SUPPORT: dict[str, Support] = {
    "VirtualService.hosts": _s(
        f"{T}context.py (vs_for_host), {T}gateway/routes.py", f"none: a delegate, see {DELEGATE}"
    ),
    "VirtualService.gateways": _s(f"{T}context.py (virtual_services)"),
    "VirtualService.http": _s(f"{T}sidecar/routes.py, {HTTPROUTE}, {T}gateway/routes.py"),
    "VirtualService.tls": _s(L4),
    "VirtualService.tcp": _s(L4),
    "VirtualService.exportTo": _p(
        f"{T}scope.py (config_visible) for mesh, {DELEGATE} for delegates",
        MSG_VS_EXPORT_TO_GATEWAY,
        "with a gateway in a namespace exportTo does not list",
    ),
    "HTTPRoute.name": _s(HTTPROUTE),
    "HTTPRoute.match": _s(HTTPROUTE),
    "HTTPRoute.route": _s(HTTPROUTE),
    "HTTPRoute.redirect": _s(HTTPROUTE),
    "HTTPRoute.directResponse": _s(HTTPROUTE),
    "HTTPRoute.delegate": _s(DELEGATE, "one level, merged into the root's routes as istiod does"),
    "HTTPRoute.rewrite": _s(HTTPROUTE),
    "HTTPRoute.timeout": _s(f"{T}traffic/timeout.py"),
    "HTTPRoute.retries": _s(f"{T}traffic/retry.py"),
    "HTTPRoute.fault": _s(f"{T}traffic/fault.py"),
    "HTTPRoute.mirror": _s(f"{T}traffic/mirror.py"),
    "HTTPRoute.mirrors": _s(f"{T}traffic/mirror.py"),
    "HTTPRoute.mirrorPercent": _s(f"{T}traffic/mirror.py", "deprecated"),
    "HTTPRoute.mirrorPercentage": _s(f"{T}traffic/mirror.py"),
    "HTTPRoute.corsPolicy": _s(f"{T}traffic/cors.py"),
    "HTTPRoute.headers": _s(HTTPROUTE),
    "HTTPMatchRequest.name": _s(HTTPROUTE),
    "HTTPMatchRequest.uri": _s(HTTPROUTE),
    "HTTPMatchRequest.scheme": _s(HTTPROUTE),
    "HTTPMatchRequest.method": _s(HTTPROUTE),
    "HTTPMatchRequest.authority": _s(HTTPROUTE),
    "HTTPMatchRequest.headers": _s(HTTPROUTE),
    "HTTPMatchRequest.port": _s(f"{HTTPROUTE} (match_applies)"),
    "HTTPMatchRequest.sourceLabels": _s(f"{HTTPROUTE} (match_applies)"),
    "HTTPMatchRequest.gateways": _s(f"{HTTPROUTE} (match_applies)"),
    "HTTPMatchRequest.queryParams": _s(HTTPROUTE),
    "HTTPMatchRequest.ignoreUriCase": _s(HTTPROUTE),
    "HTTPMatchRequest.withoutHeaders": _s(HTTPROUTE),
    "HTTPMatchRequest.sourceNamespace": _s(f"{HTTPROUTE} (match_applies)"),
    "HTTPMatchRequest.statPrefix": _w(WARN_STAT_PREFIX),
    "StringMatch.exact": _s(HTTPROUTE),
    "StringMatch.prefix": _s(HTTPROUTE),
    "StringMatch.regex": _s(HTTPROUTE),
    "HTTPRouteDestination.destination": _s(HTTPROUTE),
    "HTTPRouteDestination.weight": _s(HTTPROUTE),
    "HTTPRouteDestination.headers": _s(HTTPROUTE),
    "Destination.host": _s(f"{HTTPROUTE} (destination_cluster)"),
    "Destination.subset": _s(f"{HTTPROUTE} (destination_cluster), {T}endpoints.py"),
    "Destination.port": _s(f"{HTTPROUTE} (destination_cluster)"),
    "PortSelector.number": _s(f"{HTTPROUTE}, {TP}"),
    "Headers.request": _s(f"{HTTPROUTE} (apply_headers)"),
    "Headers.response": _s(f"{HTTPROUTE} (apply_headers)"),
    "HeaderOperations.set": _s(f"{HTTPROUTE} (header_ops)"),
    "HeaderOperations.add": _s(f"{HTTPROUTE} (header_ops)"),
    "HeaderOperations.remove": _s(f"{HTTPROUTE} (header_ops)"),
    "HTTPRedirect.uri": _s(HTTPROUTE),
    "HTTPRedirect.authority": _s(HTTPROUTE),
    "HTTPRedirect.port": _s(HTTPROUTE),
    "HTTPRedirect.derivePort": _s(HTTPROUTE),
    "HTTPRedirect.scheme": _s(HTTPROUTE),
    "HTTPRedirect.redirectCode": _s(HTTPROUTE),
    "HTTPDirectResponse.status": _s(HTTPROUTE),
    "HTTPDirectResponse.body": _s(HTTPROUTE),
    "HTTPBody.string": _s(HTTPROUTE),
    "HTTPBody.bytes": _s(HTTPROUTE),
    "Delegate.name": _s(DELEGATE),
    "Delegate.namespace": _s(DELEGATE, "default: the root's namespace"),
    "HTTPRewrite.uri": _s(HTTPROUTE),
    "HTTPRewrite.authority": _s(HTTPROUTE),
    "HTTPRewrite.uriRegexRewrite": _s(HTTPROUTE),
    "RegexRewrite.match": _s(HTTPROUTE),
    "RegexRewrite.rewrite": _s(HTTPROUTE),
    "HTTPRetry.attempts": _s(f"{T}traffic/retry.py"),
    "HTTPRetry.perTryTimeout": _s(f"{T}traffic/retry.py"),
    "HTTPRetry.retryOn": _s(f"{T}traffic/retry.py"),
    "HTTPRetry.retryRemoteLocalities": _s(f"{T}traffic/retry.py"),
    "HTTPRetry.retryIgnorePreviousHosts": _s(f"{T}traffic/retry.py"),
    "HTTPRetry.backoff": _s(f"{T}traffic/retry.py"),
    "HTTPFaultInjection.delay": _s(f"{T}traffic/fault.py"),
    "HTTPFaultInjection.abort": _s(f"{T}traffic/fault.py"),
    "Delay.percent": _s(f"{T}traffic/fault.py", "deprecated"),
    "Delay.fixedDelay": _s(f"{T}traffic/fault.py"),
    "Delay.exponentialDelay": _r(MSG_EXPONENTIAL_DELAY),
    "Delay.percentage": _s(f"{T}traffic/fault.py"),
    "Percent.value": _s(f"{T}traffic/fault.py, {T}traffic/mirror.py"),
    "Abort.httpStatus": _s(f"{T}traffic/fault.py"),
    "Abort.grpcStatus": _s(f"{T}traffic/fault.py", "status names as Istio validates them"),
    "Abort.http2Error": _r(MSG_HTTP2_ERROR),
    "Abort.percentage": _s(f"{T}traffic/fault.py"),
    "HTTPMirrorPolicy.destination": _s(f"{T}traffic/mirror.py"),
    "HTTPMirrorPolicy.percentage": _s(f"{T}traffic/mirror.py"),
    "CorsPolicy.allowOrigin": _s(f"{T}traffic/cors.py", "deprecated"),
    "CorsPolicy.allowOrigins": _s(f"{T}traffic/cors.py"),
    "CorsPolicy.allowMethods": _s(f"{T}traffic/cors.py"),
    "CorsPolicy.allowHeaders": _s(f"{T}traffic/cors.py"),
    "CorsPolicy.exposeHeaders": _s(f"{T}traffic/cors.py"),
    "CorsPolicy.maxAge": _s(f"{T}traffic/cors.py"),
    "CorsPolicy.allowCredentials": _s(f"{T}traffic/cors.py"),
    "CorsPolicy.unmatchedPreflights": _s(f"{T}traffic/cors.py"),
    "TLSRoute.match": _s(L4),
    "TLSRoute.route": _s(L4),
    "TLSMatchAttributes.sniHosts": _s(L4),
    "TLSMatchAttributes.destinationSubnets": _p(f"{T}sidecar/tlsroute.py", MSG_L4_AT_GATEWAY, "on gateways"),
    "TLSMatchAttributes.port": _s(L4),
    "TLSMatchAttributes.sourceLabels": _p(
        f"{T}sidecar/tcproute.py (l4_match_applies)", MSG_L4_AT_GATEWAY, "on gateways"
    ),
    "TLSMatchAttributes.gateways": _s(L4),
    "TLSMatchAttributes.sourceNamespace": _p(
        f"{T}sidecar/tcproute.py (l4_match_applies)", MSG_L4_AT_GATEWAY, "on gateways"
    ),
    "RouteDestination.destination": _s(L4),
    "RouteDestination.weight": _s(L4),
    "TCPRoute.match": _s(L4),
    "TCPRoute.route": _s(L4),
    "L4MatchAttributes.destinationSubnets": _p(f"{T}sidecar/tcproute.py", MSG_L4_AT_GATEWAY, "on gateways"),
    "L4MatchAttributes.port": _s(L4),
    "L4MatchAttributes.sourceSubnet": _r(MSG_SOURCE_SUBNET),
    "L4MatchAttributes.sourceLabels": _p(
        f"{T}sidecar/tcproute.py (l4_match_applies)", MSG_L4_AT_GATEWAY, "on gateways"
    ),
    "L4MatchAttributes.gateways": _s(L4),
    "L4MatchAttributes.sourceNamespace": _p(
        f"{T}sidecar/tcproute.py (l4_match_applies)", MSG_L4_AT_GATEWAY, "on gateways"
    ),
}


def _gateway_names(names: Any, vs_gateways: Any) -> list[str]:
    return list(names) or list(vs_gateways) or ["mesh"]


def _vs_gateway_ns(ref: str, vs_ns: str) -> str:
    return ref.partition("/")[0] if "/" in ref else vs_ns


def check_virtual_service(vs: vs_pb.VirtualService, namespace: str = "") -> Problems:
    out: Problems = []
    for i, r in enumerate(vs.http):
        path = f"spec.http[{i}]"
        if r.HasField("fault"):
            if r.fault.HasField("delay"):
                _reject(r.fault.delay, ("exponential_delay",), f"{path}.fault.delay", MSG_EXPONENTIAL_DELAY, out)
            if r.fault.HasField("abort"):
                _reject(r.fault.abort, ("http2_error",), f"{path}.fault.abort", MSG_HTTP2_ERROR, out)
    l4_routes: tuple[tuple[str, Any], ...] = (("tls", vs.tls), ("tcp", vs.tcp))
    for route_kind, routes in l4_routes:
        for i, rt in enumerate(routes):
            for j, m in enumerate(rt.match):
                path = f"spec.{route_kind}[{i}].match[{j}]"
                if route_kind == "tcp":
                    _reject(m, ("source_subnet",), path, MSG_SOURCE_SUBNET, out)
                if any(g != "mesh" for g in _gateway_names(m.gateways, vs.gateways)):
                    fields = ("destination_subnets", "source_labels", "source_namespace")
                    _reject(m, fields, path, MSG_L4_AT_GATEWAY, out)
    export = set(vs.export_to)
    if export and "*" not in export:
        targets = {namespace if t == "." else t for t in export}
        for g in vs.gateways:
            if g != "mesh" and _vs_gateway_ns(g, namespace) not in targets:
                out.append(FieldProblem("spec.exportTo", MSG_VS_EXPORT_TO_GATEWAY))
                break
    return out


def ignored(spec: vs_pb.VirtualService) -> Problems:
    """Set fields accepted with a warning (they only name stats)."""
    out: Problems = []
    for i, r in enumerate(spec.http):
        for j, m in enumerate(r.match):
            if m.stat_prefix:
                out.append(FieldProblem(f"spec.http[{i}].match[{j}].statPrefix", WARN_STAT_PREFIX))
    return out
