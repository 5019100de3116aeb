"""Plug-in points where per-feature modules hook into the core translators.

Each feature (retries, fault, cors, traffic policy, mTLS, rbac, ...) lives in its
own module and registers one function here; the core builders call every
registered function in order. Registration happens at import of
`istiod_py.translate.plugins`, which imports the feature modules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from envoy.config.cluster.v3 import cluster_pb2
    from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
    from envoy.config.route.v3 import route_components_pb2
    from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
    from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

    from istiod_py.config.model import Config
    from istiod_py.model import Proxy, Service
    from istiod_py.model.service import Port

    from .context import PushContext


@dataclass(frozen=True, slots=True)
class RouteInput:
    """What a route feature sees: the Istio HTTPRoute it came from and where."""

    ctx: PushContext
    vs: Config | None  # None for the default route of a service
    http: Any  # istio.networking.v1alpha3.HTTPRoute (None for default routes)
    port: int  # listener port the route serves
    proxy_ns: str
    gateway: str  # "mesh" or "ns/name"


ClusterFeature = Callable[["PushContext", "cluster_pb2.Cluster", "Service", "Port", str, str], None]
RouteFeature = Callable[[RouteInput, "route_components_pb2.Route"], None]
# (ctx, proxy, direction "inbound"/"outbound"/"gateway", port) -> filters to add before the router
HttpFilterFeature = Callable[["PushContext", "Proxy", str, int], list["http_connection_manager_pb2.HttpFilter"]]

# (ctx, proxy, direction, port) -> network filters placed before the HCM / tcp_proxy
NetworkFilterFeature = Callable[["PushContext", "Proxy", str, int], list["listener_components_pb2.Filter"]]

# (ctx, proxy, direction, port, hcm) -> None: edits the HTTP connection manager itself
# (access logs, tracing, request metrics), after its HTTP filters are in place.
HcmFeature = Callable[["PushContext", "Proxy", str, int, "http_connection_manager_pb2.HttpConnectionManager"], None]
# (ctx, proxy, direction, tcp_proxy) -> None: edits every tcp_proxy of a built listener.
TcpProxyFeature = Callable[["PushContext", "Proxy", str, "tcp_proxy_pb2.TcpProxy"], None]

CLUSTER_FEATURES: list[ClusterFeature] = []
HCM_FEATURES: list[HcmFeature] = []
TCP_PROXY_FEATURES: list[TcpProxyFeature] = []
NETWORK_FILTER_FEATURES: list[NetworkFilterFeature] = []
ROUTE_FEATURES: list[RouteFeature] = []
HTTP_FILTER_FEATURES: list[HttpFilterFeature] = []


def cluster_feature(fn: ClusterFeature) -> ClusterFeature:
    CLUSTER_FEATURES.append(fn)
    return fn


def route_feature(fn: RouteFeature) -> RouteFeature:
    ROUTE_FEATURES.append(fn)
    return fn


def http_filter_feature(fn: HttpFilterFeature) -> HttpFilterFeature:
    HTTP_FILTER_FEATURES.append(fn)
    return fn


def apply_cluster_features(
    ctx: PushContext, cluster: cluster_pb2.Cluster, svc: Service, port: Port, subset: str, viewer_ns: str
) -> None:
    for fn in CLUSTER_FEATURES:
        fn(ctx, cluster, svc, port, subset, viewer_ns)


def apply_route_features(inp: RouteInput, route: route_components_pb2.Route) -> None:
    for fn in ROUTE_FEATURES:
        fn(inp, route)


def extra_http_filters(
    ctx: PushContext, proxy: Proxy, direction: str, port: int
) -> list[http_connection_manager_pb2.HttpFilter]:
    out: list[http_connection_manager_pb2.HttpFilter] = []
    for fn in HTTP_FILTER_FEATURES:
        out.extend(fn(ctx, proxy, direction, port))
    return out


def network_filter_feature(fn: NetworkFilterFeature) -> NetworkFilterFeature:
    NETWORK_FILTER_FEATURES.append(fn)
    return fn


def extra_network_filters(
    ctx: PushContext, proxy: Proxy, direction: str, port: int
) -> list[listener_components_pb2.Filter]:
    out: list[listener_components_pb2.Filter] = []
    for fn in NETWORK_FILTER_FEATURES:
        out.extend(fn(ctx, proxy, direction, port))
    return out


def hcm_feature(fn: HcmFeature) -> HcmFeature:
    HCM_FEATURES.append(fn)
    return fn


def tcp_proxy_feature(fn: TcpProxyFeature) -> TcpProxyFeature:
    TCP_PROXY_FEATURES.append(fn)
    return fn


def apply_hcm_features(
    ctx: PushContext, proxy: Proxy, direction: str, port: int, m: http_connection_manager_pb2.HttpConnectionManager
) -> None:
    for fn in HCM_FEATURES:
        fn(ctx, proxy, direction, port, m)


TCP_PROXY_NAME = "envoy.filters.network.tcp_proxy"


def apply_tcp_proxy_features(ctx: PushContext, proxy: Proxy, direction: str, listener: listener_pb2.Listener) -> None:
    """Runs the tcp_proxy features on every tcp_proxy filter of a built listener
    (they are built in several places, none of which knows the proxy)."""
    if not TCP_PROXY_FEATURES:
        return
    from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

    chains = [
        *listener.filter_chains,
        *([listener.default_filter_chain] if listener.HasField("default_filter_chain") else []),
    ]
    for chain in chains:
        for f in chain.filters:
            if f.name != TCP_PROXY_NAME:
                continue
            tp = tcp_proxy_pb2.TcpProxy()
            f.typed_config.Unpack(tp)
            for fn in TCP_PROXY_FEATURES:
                fn(ctx, proxy, direction, tp)
            f.typed_config.Pack(tp)


def with_tcp_features(
    ctx: PushContext, proxy: Proxy, direction: str, listener: listener_pb2.Listener
) -> listener_pb2.Listener:
    apply_tcp_proxy_features(ctx, proxy, direction, listener)
    return listener
