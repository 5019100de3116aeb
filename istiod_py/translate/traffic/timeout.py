"""VirtualService `timeout`: Envoy's route timeout (0s, disabled, when unset)."""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2 as rc

from ..features import RouteInput, route_feature


@route_feature
def timeout(inp: RouteInput, route: rc.Route) -> None:
    if not route.HasField("route"):
        return
    if inp.http is not None and inp.http.HasField("timeout"):
        route.route.timeout.CopyFrom(inp.http.timeout)
    # As istiod: a gRPC client's grpc-timeout is honoured but capped at the route
    # timeout (uncapped when the route has none). This must be the deprecated
    # max_grpc_timeout: any `max_stream_duration` on the route switches Envoy to
    # its "new timeouts", under which the route `timeout` is ignored.
    route.route.max_grpc_timeout.CopyFrom(route.route.timeout)
