"""VirtualService `mirror` / `mirrorPercentage` / `mirrors`: Envoy request
mirror policies on the route action, as istiod builds them."""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.v3 import percent_pb2

from ..features import RouteInput, route_feature
from ..route.httproute import destination_cluster
from .fault import integer_to_fraction, percent_to_fraction


def _runtime_fraction(fraction: percent_pb2.FractionalPercent) -> base_pb2.RuntimeFractionalPercent:
    return base_pb2.RuntimeFractionalPercent(default_value=fraction)


_ALL = percent_pb2.FractionalPercent(numerator=100, denominator=percent_pb2.FractionalPercent.HUNDRED)


def mirror_fraction(http: Any) -> base_pb2.RuntimeFractionalPercent | None:
    """The fraction for the single `mirror`: mirrorPercentage, else the deprecated
    mirrorPercent, else 100%. An explicit 0 turns mirroring off."""
    if http.HasField("mirror_percentage"):
        v = http.mirror_percentage.value
        return _runtime_fraction(percent_to_fraction(v)) if v > 0 else None
    if http.HasField("mirror_percent"):
        n = http.mirror_percent.value
        return _runtime_fraction(integer_to_fraction(n)) if n > 0 else None
    return _runtime_fraction(_ALL)


def policy_fraction(policy: Any) -> base_pb2.RuntimeFractionalPercent | None:
    if policy.HasField("percentage"):
        v = policy.percentage.value
        return _runtime_fraction(percent_to_fraction(v)) if v > 0 else None
    return _runtime_fraction(_ALL)


def _policy(cluster: str, fraction: base_pb2.RuntimeFractionalPercent) -> rc.RouteAction.RequestMirrorPolicy:
    p = rc.RouteAction.RequestMirrorPolicy(cluster=cluster, runtime_fraction=fraction)
    p.trace_sampled.value = False
    return p


@route_feature
def mirror(inp: RouteInput, route: rc.Route) -> None:
    http = inp.http
    if http is None or not route.HasField("route"):
        return
    vs_ns = inp.vs.meta.namespace if inp.vs is not None else inp.proxy_ns
    action = route.route
    if http.HasField("mirror"):
        fraction = mirror_fraction(http)
        if fraction is not None:
            cluster = destination_cluster(inp.ctx, http.mirror, vs_ns, inp.port)
            action.request_mirror_policies.append(_policy(cluster, fraction))
    for m in http.mirrors:
        if not m.HasField("destination"):
            continue
        fraction = policy_fraction(m)
        if fraction is not None:
            cluster = destination_cluster(inp.ctx, m.destination, vs_ns, inp.port)
            action.request_mirror_policies.append(_policy(cluster, fraction))
