"""What a router proxy gets per xDS type (see servers.py for how Gateways
select it and merge their servers).

CDS/EDS are the parts a sidecar without a Sidecar resource gets, built by the
Translator (passed in as `SidecarParts`, so this module does not import the
Translator), plus the SNI-named clusters AUTO_PASSTHROUGH needs; LDS comes from
listeners.py, RDS from routes.py."""

from __future__ import annotations

from typing import Protocol

from istiod_py.cache.resources import Part, Resources, build, resources_of
from istiod_py.model import Proxy
from istiod_py.xds.types import TypeUrl

from ..context import PushContext
from ..features import with_tcp_features
from ..security import mtls
from . import listeners as gateway_listeners
from . import routes as gateway_routes
from .servers import gateway_keys, port_map, selected_gateways, servers


class SidecarParts(Protocol):
    """The Translator's shared outbound parts a gateway reuses (generate.Translator)."""

    def outbound_clusters(self, ctx: PushContext, proxy: Proxy) -> Part: ...

    def endpoints(self, ctx: PushContext, proxy: Proxy) -> Part: ...


def _pmap_key(ctx: PushContext, proxy: Proxy) -> tuple[tuple[int, int], ...]:
    return tuple(sorted(port_map(ctx, proxy).items()))


def generate(ctx: PushContext, proxy: Proxy, type_url: str, translator: SidecarParts) -> Resources:
    gws = gateway_keys(selected_gateways(ctx, proxy))
    if type_url == TypeUrl.CLUSTER:
        outbound = translator.outbound_clusters(ctx, proxy)
        sni = ctx.cached(
            ("gw-cds-sni", gws, proxy.namespace),
            lambda: Part(gateway_listeners.sni_dnat_clusters(ctx, proxy, servers(ctx, proxy), outbound)),
        )
        return resources_of(outbound, sni)
    if type_url == TypeUrl.ENDPOINT:
        return resources_of(translator.endpoints(ctx, proxy))
    if type_url == TypeUrl.LISTENER:
        bind_key = proxy.ip if proxy.capture_none else ""

        def listeners() -> Part:
            return Part(
                {
                    lst.name: build(lst.name, TypeUrl.LISTENER, with_tcp_features(ctx, proxy, "gateway", lst))
                    for lst in gateway_listeners.build_listeners(ctx, proxy, servers(ctx, proxy))
                }
            )

        # TLS server credentials are SDS references or file paths depending on the proxy.
        lds_key = (
            "gw-lds", gws, bind_key, _pmap_key(ctx, proxy), proxy.namespace, proxy.labels_key,
            mtls.sds_capable(proxy),
        )  # fmt: skip
        return resources_of(ctx.cached(lds_key, listeners))
    if type_url == TypeUrl.ROUTE:

        def routes() -> Part:
            return Part(
                {
                    rc.name: build(rc.name, TypeUrl.ROUTE, rc)
                    for rc in gateway_routes.build_route_configs(ctx, proxy, servers(ctx, proxy))
                }
            )

        key = ("gw-rds", gws, _pmap_key(ctx, proxy), proxy.namespace, proxy.labels_key)
        return resources_of(ctx.cached(key, routes))
    return resources_of()
