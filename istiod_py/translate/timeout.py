"""VirtualService `timeout`: Envoy's route timeout (0s, disabled, when unset)."""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2 as rc

from .features import RouteInput, route_feature


@route_feature
def timeout(inp: RouteInput, route: rc.Route) -> None:
    if not route.HasField("route") or inp.http is None or not inp.http.HasField("timeout"):
        return
    route.route.timeout.CopyFrom(inp.http.timeout)
    # gRPC deadlines shorter than the route timeout still win, as in Istio.
    route.route.max_stream_duration.grpc_timeout_header_max.seconds = 0
