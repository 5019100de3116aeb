"""VirtualService `tcp` routes on sidecar outbound listeners, as istiod builds
them (its `buildSidecarOutboundTCPFilterChainOpts`).

A service port yields filter chain *specs* (`L4Chain`): what the chain matches
(destination prefix ranges, SNI) and where tcp_proxy sends the connection (one
cluster, or weighted clusters). listeners.py merges the specs of every service on
a port into one listener and drops duplicate matches (Envoy rejects them).

For each VirtualService bound to the service host (gateway `mesh`), in order:

- a `tcp` route without `match` is terminal: it takes every connection;
- a route whose matching block (port, sourceLabels, sourceNamespace, gateways)
  has no destinationSubnets is terminal too;
- matching blocks with destinationSubnets add one chain on those subnets.

Without a terminal route, a default chain sends the rest to the service's own
cluster `outbound|PORT||HOST`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from envoy.config.listener.v3.listener_components_pb2 import FilterChain
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from istiod_py.config.model import Config
from istiod_py.model import Proxy, Service, labels_match

from .. import naming
from ..context import PushContext, fqdn
from ..route.httproute import destination_cluster
from ..scope import host_matches

TCP_PROXY_NAME = "envoy.filters.network.tcp_proxy"
MESH_GATEWAY = "mesh"


@dataclass(frozen=True, slots=True)
class L4Chain:
    """One outbound L4 filter chain: its match and its tcp_proxy destinations."""

    destinations: tuple[tuple[str, int], ...]  # (cluster, weight); a single entry is an unweighted cluster
    stat_prefix: str
    prefix_ranges: tuple[str, ...] = ()
    server_names: tuple[str, ...] = ()
    config: str = ""  # `/apis/networking.istio.io/v1/namespaces/NS/virtual-service/NAME`, or ""
    origin: str = field(default="", compare=False)  # for debugging and conflict messages


def normalize_cidrs(values: Sequence[str]) -> tuple[str, ...]:
    """Addresses and subnets as Envoy CIDR ranges (`10.0.0.1` -> `10.0.0.1/32`),
    de-duplicated, order kept; values that are not addresses are dropped (the
    validator reports them)."""
    out: list[str] = []
    for v in values:
        try:
            net = ipaddress.ip_network(v.strip(), strict=False)
        except ValueError:
            continue
        text = str(net)
        if text not in out:
            out.append(text)
    return tuple(out)


def config_path(cfg: Config) -> str:
    return naming.config_path("virtual-service", cfg.meta.namespace, cfg.meta.name)


def virtual_services_for(ctx: PushContext, svc: Service, viewer_ns: str) -> list[Config]:
    """Every mesh VirtualService whose hosts cover the service (istiod applies all
    of them to L4 ports, in config order, not only the first)."""
    out = []
    for cfg in ctx.virtual_services(viewer_ns, MESH_GATEWAY):
        spec: Any = cfg.spec
        if any(host_matches(fqdn(h, cfg.meta.namespace, ctx.domain), svc.hostname) for h in spec.hosts):
            out.append(cfg)
    return out


def l4_match_applies(m: Any, proxy: Proxy, port: int, vs_ns: str) -> bool:
    """The parts of an L4/TLS match istiod evaluates while building config."""
    if m.port and m.port != port:
        return False
    if m.source_labels and not labels_match(dict(m.source_labels), proxy.labels):
        return False
    if m.source_namespace and m.source_namespace != proxy.namespace:
        return False
    if m.gateways:
        names = {g if g == MESH_GATEWAY or "/" in g else f"{vs_ns}/{g}" for g in m.gateways}
        if MESH_GATEWAY not in names:
            return False
    return True


def route_destinations(ctx: PushContext, routes: Sequence[Any], vs_ns: str, port: int) -> tuple[tuple[str, int], ...]:
    """RouteDestinations -> (cluster, weight). istiod leaves out zero weights; a
    lone destination is a plain cluster whatever its weight."""
    if len(routes) == 1:
        return ((destination_cluster(ctx, routes[0].destination, vs_ns, port), 0),)
    weighted = tuple(
        (destination_cluster(ctx, r.destination, vs_ns, port), int(r.weight)) for r in routes if r.weight > 0
    )
    if not weighted:  # all zero: validation rejects it; send to the first rather than nowhere
        return ((destination_cluster(ctx, routes[0].destination, vs_ns, port), 0),)
    return weighted


def vs_chain(
    ctx: PushContext,
    vs: Config,
    routes: Sequence[Any],
    port: int,
    *,
    prefix_ranges: tuple[str, ...] = (),
    server_names: tuple[str, ...] = (),
) -> L4Chain:
    dests = route_destinations(ctx, routes, vs.meta.namespace, port)
    stat = dests[0][0] if len(dests) == 1 else f"{vs.meta.name}.{vs.meta.namespace}"
    return L4Chain(
        dests,
        stat,
        prefix_ranges,
        server_names,
        config_path(vs),
        origin=f"VirtualService {vs.meta.namespace}/{vs.meta.name}",
    )


def default_chain(
    svc: Service, port: int, *, prefix_ranges: tuple[str, ...] = (), server_names: tuple[str, ...] = ()
) -> L4Chain:
    cluster = naming.outbound_cluster(port, svc.hostname)
    return L4Chain(((cluster, 0),), cluster, prefix_ranges, server_names, origin=f"service {svc.hostname}")


def tcp_chains(
    ctx: PushContext,
    proxy: Proxy,
    svc: Service,
    port: int,
    service_cidrs: tuple[str, ...],
    vss: Sequence[Config] | None = None,
) -> list[L4Chain]:
    """Chains for opaque TCP to `svc` on `port`; `service_cidrs` are the
    destination ranges that identify the service on this listener (none when the
    listener cannot tell services apart by destination address)."""
    if vss is None:
        vss = virtual_services_for(ctx, svc, proxy.namespace)
    out: list[L4Chain] = []
    for vs in vss:
        spec: Any = vs.spec
        for tcp in spec.tcp:
            if not tcp.route:
                continue
            if not tcp.match:
                out.append(vs_chain(ctx, vs, list(tcp.route), port, prefix_ranges=service_cidrs))
                return out
            subnets: list[str] = []
            for m in tcp.match:
                if not l4_match_applies(m, proxy, port, vs.meta.namespace):
                    continue
                if not m.destination_subnets:
                    out.append(vs_chain(ctx, vs, list(tcp.route), port, prefix_ranges=service_cidrs))
                    return out
                subnets += m.destination_subnets
            ranges = normalize_cidrs(subnets)
            if ranges:
                out.append(vs_chain(ctx, vs, list(tcp.route), port, prefix_ranges=ranges))
                if sorted(ranges) == sorted(service_cidrs):
                    return out  # the default would repeat this match
    out.append(default_chain(svc, port, prefix_ranges=service_cidrs))
    return out


def tcp_proxy(chain: L4Chain) -> tcp_proxy_pb2.TcpProxy:
    tp = tcp_proxy_pb2.TcpProxy(stat_prefix=chain.stat_prefix)
    if len(chain.destinations) == 1:
        tp.cluster = chain.destinations[0][0]
    else:
        for cluster, weight in chain.destinations:
            tp.weighted_clusters.clusters.add(name=cluster, weight=weight)
    return tp


def filter_chain(chain: L4Chain) -> FilterChain:
    """The Envoy filter chain for a spec (its match filled in by the caller's merge)."""
    fc = FilterChain()
    if chain.prefix_ranges:
        for cidr in chain.prefix_ranges:
            addr, _, plen = cidr.partition("/")
            fc.filter_chain_match.prefix_ranges.add(address_prefix=addr, prefix_len={"value": int(plen)})
    if chain.server_names:
        fc.filter_chain_match.server_names.extend(chain.server_names)
    if chain.config:
        fc.metadata.filter_metadata["istio"].update({"config": chain.config})
    fc.filters.add(name=TCP_PROXY_NAME).typed_config.Pack(tcp_proxy(chain))
    return fc


def uses_source_labels(ctx: PushContext) -> bool:
    """Whether any tcp/tls match depends on the proxy's labels (then outbound
    listeners differ per label set, not only per Sidecar scope)."""
    for cfg in ctx.state.of_kind("VirtualService"):
        spec: Any = cfg.spec
        for route in list(spec.tcp) + list(spec.tls):
            for m in route.match:
                if m.source_labels:
                    return True
    return False
