"""Inbound resources for a sidecar whose traffic iptables captures (INTERCEPTION_MODE
REDIRECT or TPROXY): the inbound clusters and `virtualInbound`, memoized per
state. captureMode NONE never comes here (generate.py keeps its own path)."""

from __future__ import annotations

from istiod_py.cache.resources import Part, build
from istiod_py.model import Proxy
from istiod_py.xds.types import TypeUrl

from .. import naming
from ..context import PushContext, SidecarScope
from ..features import with_tcp_features
from ..security import mtls
from . import capture_clusters, capture_inbound, headless
from . import listeners as lds


def inbound_clusters(ctx: PushContext, proxy: Proxy, scope: SidecarScope) -> Part:
    ingress = tuple(capture_inbound.captured_inbound_ports(ctx, proxy, scope))

    def make() -> Part:
        out = {}
        for c in (capture_clusters.inbound_passthrough(),):
            out[c.name] = build(c.name, TypeUrl.CLUSTER, c)
        for ing in ingress:
            c = capture_clusters.inbound_cluster(ctx, proxy, ing.port, ing.default_endpoint)
            out[c.name] = build(c.name, TypeUrl.CLUSTER, c)
        return Part(out)

    return ctx.cached(("cds-in-captured", ingress), make)


def inbound_listeners(ctx: PushContext, proxy: Proxy, scope: SidecarScope) -> Part:
    ingress = tuple(capture_inbound.captured_inbound_ports(ctx, proxy, scope))
    # What the chains read besides the ports: PeerAuthentication modes and the
    # policies selected by the proxy's namespace and labels (authz, authn).
    key = (
        "lds-in-captured",
        proxy.ip,
        proxy.namespace,
        proxy.labels_key,
        proxy.interception_mode,
        ingress,
        mtls.inbound_key(ctx, proxy, [0, *(i.port.number for i in ingress)]),
    )

    def make() -> Part:
        listeners = [capture_inbound.virtual_inbound(ctx, proxy, list(ingress))]
        # Sidecar ingress entries with captureMode NONE bind their port, as without iptables.
        listeners += [lds.inbound_listener(ctx, proxy, ing) for ing in ingress if ing.capture_none]
        return Part(
            {
                lst.name: build(lst.name, TypeUrl.LISTENER, with_tcp_features(ctx, proxy, "inbound", lst))
                for lst in listeners
            }
        )

    return ctx.cached(key, make)


def outbound_clusters(ctx: PushContext, proxy: Proxy, base: Part) -> Part:
    """`base` (the scope's outbound clusters, shared with captureMode NONE
    proxies) with headless services' clusters made ORIGINAL_DST; `base` itself
    when the scope has none, so the common case shares it."""
    hosts = {h for h, _ in headless.digest(ctx)}

    if not hosts:
        return base

    def make() -> Part:
        items = dict(base.items)
        changed = False
        for name, built in base.items.items():
            parsed = naming.parse_cluster(name)
            if parsed is not None and parsed[3] in hosts:
                c = capture_clusters.headless_original_dst(ctx, built.message(), parsed[3], parsed[1])
                items[name] = build(name, TypeUrl.CLUSTER, c)
                changed = True
        return Part(items, dict(base.origins)) if changed else base  # provenance unchanged

    # `base` lives in this state's memo, so its id names it for the state's lifetime.
    return ctx.cached(("cds-out-captured", id(base)), make)
