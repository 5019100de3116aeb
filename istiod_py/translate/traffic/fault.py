"""VirtualService `fault`: Envoy's HTTP fault filter, configured per route.

As istiod does, every HTTP connection manager carries an empty
`envoy.filters.http.fault` filter (it does nothing on its own); a route with a
`fault` gets an HTTPFault in its typed_per_filter_config."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.type.v3 import percent_pb2

from ..features import RouteInput, http_filter_feature, route_feature

if TYPE_CHECKING:
    from istiod_py.model import Proxy

    from ..context import PushContext

FAULT_FILTER = "envoy.filters.http.fault"

# Istio's gRPC status names (validation accepts exactly these) -> codes.
GRPC_STATUS: dict[str, int] = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}


def percent_to_fraction(value: float) -> percent_pb2.FractionalPercent:
    """Istio `Percent` (0-100, fractional) -> per-million, as istiod translates it."""
    return percent_pb2.FractionalPercent(
        numerator=int(value * 10000), denominator=percent_pb2.FractionalPercent.MILLION
    )


def integer_to_fraction(value: int) -> percent_pb2.FractionalPercent:
    """The deprecated integer `percent` -> per-hundred."""
    return percent_pb2.FractionalPercent(numerator=max(value, 0), denominator=percent_pb2.FractionalPercent.HUNDRED)


def translate_fault(fault: Any) -> fault_pb2.HTTPFault | None:
    """Istio HTTPFaultInjection -> Envoy HTTPFault; None when nothing applies.

    Without a `percentage` nothing is injected (numerator 0), as in Istio.
    Exponential delays and HTTP/2 errors are not supported by istiod either."""
    out = fault_pb2.HTTPFault()
    has_delay = has_abort = False
    if fault.HasField("delay"):
        d = fault.delay
        if d.WhichOneof("http_delay_type") == "fixed_delay":
            has_delay = True
            out.delay.fixed_delay.CopyFrom(d.fixed_delay)
            if d.HasField("percentage"):
                out.delay.percentage.CopyFrom(percent_to_fraction(d.percentage.value))
            else:
                out.delay.percentage.CopyFrom(integer_to_fraction(d.percent))
    if fault.HasField("abort"):
        a = fault.abort
        kind = a.WhichOneof("error_type")
        if kind == "http_status" and 200 <= a.http_status < 600:
            has_abort = True
            out.abort.http_status = a.http_status
        elif kind == "grpc_status" and a.grpc_status.upper() in GRPC_STATUS:
            has_abort = True
            out.abort.grpc_status = GRPC_STATUS[a.grpc_status.upper()]
        # Left unset, Envoy aborts no request (0%), as Istio documents.
        if has_abort and a.HasField("percentage"):
            out.abort.percentage.CopyFrom(percent_to_fraction(a.percentage.value))
    if not has_delay and not has_abort:
        return None
    if not has_delay:
        out.ClearField("delay")
    if not has_abort:
        out.ClearField("abort")
    return out


@route_feature
def fault(inp: RouteInput, route: rc.Route) -> None:
    http = inp.http
    if http is None or not http.HasField("fault") or not route.HasField("route"):
        return
    cfg = translate_fault(http.fault)
    if cfg is not None:
        route.typed_per_filter_config[FAULT_FILTER].Pack(cfg)


def fault_filter() -> hcm.HttpFilter:
    f = hcm.HttpFilter(name=FAULT_FILTER)
    f.typed_config.Pack(fault_pb2.HTTPFault())
    return f


@http_filter_feature
def fault_http_filter(ctx: PushContext, proxy: Proxy, direction: str, port: int) -> list[hcm.HttpFilter]:
    # istiod puts the (empty) fault filter in every HTTP connection manager so
    # per-route configuration has a filter to act on.
    return [fault_filter()]


__all__ = ["FAULT_FILTER", "GRPC_STATUS", "fault_filter", "percent_to_fraction", "translate_fault"]
