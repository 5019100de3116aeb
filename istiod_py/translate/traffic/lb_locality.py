"""Locality load balancing (`loadBalancer.localityLbSetting`) in EDS, as istiod does it.

Istio expresses locality preference through EDS relative to the client proxy's
locality: `failover` (and the default) sets each locality group's priority
(0 same subzone, 1 same zone, 2 same region, 3 elsewhere, 4 a region other than
the configured failover target), `failoverPriority` splits groups by how many
of the listed labels match the proxy's, and `distribute` rewrites the locality
weights. Failover only takes effect with outlierDetection (without it Envoy
never sees a host fail and never leaves priority 0), so, as in Istio, it is only
applied when the cluster has outlierDetection.

The proxy's locality is "region/zone/subzone" from node metadata LOCALITY (Istio
agent: env ISTIO_META_LOCALITY) or ISTIO_META_LOCALITY.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from istio.networking.v1alpha3 import destination_rule_pb2 as dr_pb

from istiod_py.model import Endpoint, Proxy

from ..context import PushContext
from .traffic_policy import policy_for

REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
SUBZONE_LABEL = "topology.istio.io/subzone"


def proxy_locality(proxy: Proxy) -> str:
    meta = proxy.metadata
    for key in ("LOCALITY", "ISTIO_META_LOCALITY"):
        value = meta.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, Mapping):  # Envoy's node.locality shape
            return "/".join(str(value.get(k, "")) for k in ("region", "zone", "sub_zone")).rstrip("/")
    return ""


def split_locality(loc: str) -> tuple[str, str, str]:
    region, _, rest = loc.partition("/")
    zone, _, sub = rest.partition("/")
    return region, zone, sub


def locality_labels(loc: str, labels: Mapping[str, str]) -> dict[str, str]:
    """Labels plus the topology labels Istio derives from the locality."""
    out = dict(labels)
    region, zone, sub = split_locality(loc)
    for key, value in ((REGION_LABEL, region), (ZONE_LABEL, zone), (SUBZONE_LABEL, sub)):
        if value:
            out.setdefault(key, value)
    return out


@dataclass(frozen=True)
class LocalityView:
    """Everything one cluster's EDS output depends on beyond its endpoints."""

    setting: bytes  # serialized LocalityLoadBalancerSetting (a hashable snapshot)
    failover: bool  # outlierDetection is set: priorities apply
    locality: str
    labels: tuple[tuple[str, str], ...]  # the proxy's, only when failoverPriority is used

    @property
    def lb_setting(self) -> dr_pb.LocalityLoadBalancerSetting:
        return dr_pb.LocalityLoadBalancerSetting.FromString(self.setting)


def _uses_locality(ctx: PushContext) -> tuple[bool, bool]:
    """(some DestinationRule may make EDS depend on locality, some uses failoverPriority)."""

    def scan() -> tuple[bool, bool]:
        any_use, prio = False, False
        for cfg in ctx.state.of_kind("DestinationRule"):
            spec: Any = cfg.spec
            policies = [spec.traffic_policy] + [s.traffic_policy for s in spec.subsets]
            for tp in policies:
                levels: list[Any] = [tp, *tp.port_level_settings]
                for lvl in levels:
                    if lvl.HasField("outlier_detection"):
                        any_use = True
                    if lvl.HasField("load_balancer") and lvl.load_balancer.HasField("locality_lb_setting"):
                        any_use = True
                        if lvl.load_balancer.locality_lb_setting.failover_priority:
                            prio = True
        return any_use, prio

    return ctx.cached(("locality-used",), scan)


def proxy_key(ctx: PushContext, proxy: Proxy) -> Hashable:
    """What of the proxy its EDS output depends on: () in the common case, so proxies share it."""
    any_use, prio = _uses_locality(ctx)
    if not any_use:
        return ()
    return (proxy_locality(proxy), proxy.labels_key if prio else ())


def eds_view(ctx: PushContext, host: str, port: int, subset: str, viewer_ns: str, proxy: Proxy) -> LocalityView | None:
    """The locality view for one cluster as `proxy` sees it; None when EDS is not locality-aware."""
    if not _uses_locality(ctx)[0]:
        return None
    policy = policy_for(ctx, host, port, subset, viewer_ns)
    lb = policy.load_balancer
    setting = lb.locality_lb_setting if lb is not None and lb.HasField("locality_lb_setting") else None
    if setting is None:
        # Istio's mesh default: locality LB enabled, no explicit rules.
        setting = dr_pb.LocalityLoadBalancerSetting()
    if setting.HasField("enabled") and not setting.enabled.value:
        return None
    failover = policy.outlier_detection is not None
    if not setting.distribute and not failover:
        return None
    locality = proxy_locality(proxy)
    labels: tuple[tuple[str, str], ...] = ()
    if setting.failover_priority and failover:
        labels = tuple(sorted(locality_labels(locality, proxy.labels).items()))
    if not locality and not labels:
        return None
    return LocalityView(setting.SerializeToString(deterministic=True), failover, locality, labels)


def locality_match(loc: tuple[str, str, str], rule: str) -> bool:
    """Istio's LocalityMatch: `rule` is region[/zone[/subzone]] with `*` wildcards."""
    r_region, r_zone, r_sub = split_locality(rule)
    return (
        (r_region == "*" or loc[0] == r_region)
        and (r_zone in ("*", "") or loc[1] == r_zone)
        and (r_sub in ("*", "") or loc[2] == r_sub)
    )


def apply(cla: endpoint_pb2.ClusterLoadAssignment, endpoints: Sequence[Endpoint], view: LocalityView) -> None:
    """Rewrite priorities/weights of `cla` for a proxy, as Istio's ApplyLocalityLoadBalancer."""
    setting = view.lb_setting
    proxy_loc = split_locality(view.locality)
    if setting.distribute:
        if view.locality:
            _apply_distribute(cla, proxy_loc, setting)
        return
    if not view.failover:
        return
    if setting.failover_priority:
        _apply_failover_priority(cla, endpoints, dict(view.labels), list(setting.failover_priority))
        if setting.failover and view.locality:
            _apply_failover(cla, proxy_loc, setting)
    elif view.locality:
        _apply_failover(cla, proxy_loc, setting)


def _lb_priority(proxy: tuple[str, str, str], ep: tuple[str, str, str]) -> int:
    if proxy[0] != ep[0]:
        return 3
    if proxy[1] != ep[1]:
        return 2
    if proxy[2] != ep[2]:
        return 1
    return 0


def _compact(cla: endpoint_pb2.ClusterLoadAssignment) -> None:
    # Envoy needs priorities 0..N without gaps.
    ranks = {p: i for i, p in enumerate(sorted({g.priority for g in cla.endpoints}))}
    for g in cla.endpoints:
        g.priority = ranks[g.priority]


def _apply_failover(
    cla: endpoint_pb2.ClusterLoadAssignment,
    proxy: tuple[str, str, str],
    setting: dr_pb.LocalityLoadBalancerSetting,
) -> None:
    for group in cla.endpoints:
        ep_loc = (group.locality.region, group.locality.zone, group.locality.sub_zone)
        prio = _lb_priority(proxy, ep_loc)
        if prio == 3:
            for fo in setting.failover:
                if getattr(fo, "from") == proxy[0]:
                    if ep_loc[0] != fo.to:
                        prio = 4
                    break
        # Keep any failoverPriority ordering already assigned (at most 5 locality levels).
        group.priority = group.priority * 5 + prio
    _compact(cla)


def _apply_distribute(
    cla: endpoint_pb2.ClusterLoadAssignment,
    proxy: tuple[str, str, str],
    setting: dr_pb.LocalityLoadBalancerSetting,
) -> None:
    for rule in setting.distribute:
        if not locality_match(proxy, getattr(rule, "from")):
            continue
        unmatched = set(range(len(cla.endpoints)))
        for dest in sorted(rule.to):
            weight = rule.to[dest]
            originals: dict[int, int] = {}
            for i, group in enumerate(cla.endpoints):
                if i not in unmatched:
                    continue
                loc = (group.locality.region, group.locality.zone, group.locality.sub_zone)
                if locality_match(loc, dest):
                    unmatched.discard(i)
                    originals[i] = group.load_balancing_weight.value or 1
            total = sum(originals.values())
            for i, orig in originals.items():
                w = orig * weight / total
                if w > 0:
                    cla.endpoints[i].load_balancing_weight.value = math.ceil(w)
        # Localities the rule does not send to get no traffic at all.
        for i in unmatched:
            del cla.endpoints[i].lb_endpoints[:]
        return


def _apply_failover_priority(
    cla: endpoint_pb2.ClusterLoadAssignment,
    endpoints: Sequence[Endpoint],
    proxy_labels: Mapping[str, str],
    priorities: list[str],
) -> None:
    if not proxy_labels:
        return
    names: list[str] = []
    overrides: dict[str, str] = {}
    for item in priorities:
        name, eq, value = item.partition("=")
        names.append(name)
        if eq:
            overrides[name] = value
    by_addr = {(e.address, e.port): locality_labels(e.locality, e.labels) for e in endpoints}
    lowest = len(names)
    out: list[endpoint_components_pb2.LocalityLbEndpoints] = []
    for group in cla.endpoints:
        buckets: dict[int, list[endpoint_components_pb2.LbEndpoint]] = {}
        for lbe in group.lb_endpoints:
            sa = lbe.endpoint.address.socket_address
            labels = by_addr.get((sa.address, sa.port_value), {})
            prio = 0
            for j, name in enumerate(names):
                want = overrides.get(name, proxy_labels.get(name))
                if want != labels.get(name):
                    prio = lowest - j
                    break
            buckets.setdefault(prio, []).append(lbe)
        for prio in sorted(buckets):
            g = endpoint_components_pb2.LocalityLbEndpoints()
            g.CopyFrom(group)
            del g.lb_endpoints[:]
            g.lb_endpoints.extend(buckets[prio])
            g.priority = prio
            g.load_balancing_weight.value = sum(e.load_balancing_weight.value for e in buckets[prio])
            out.append(g)
    del cla.endpoints[:]
    cla.endpoints.extend(out)
    _compact(cla)
