"""The translator: (MeshState, Proxy) -> built resources per xDS type.

Pure with respect to its inputs; every distinct output is built and serialized
once per state (memoized in the PushContext by what it depends on), and EDS
output survives across states for hosts whose endpoints did not change."""

from __future__ import annotations

from typing import Any

from istiod_py.cache.resources import Built, Part, Resources, build, build_from_bytes, resources_of
from istiod_py.model import MeshState, Proxy, ProxyType, Resolution, Service
from istiod_py.model.mesh import changed_kinds
from istiod_py.model.service import Port
from istiod_py.xds.types import TypeUrl

from . import clusters as cds
from . import endpoints as eds
from . import (
    naming,
    plugins,  # noqa: F401  (registers feature modules)
    provenance,
)
from .context import PushContext
from .envoyfilter import apply as apply_envoyfilters
from .features import with_tcp_features
from .gateway.generate import generate as generate_gateway
from .security import mtls
from .sidecar import capture, capture_outbound, headless, route_share, tcproute
from .sidecar import listeners as lds
from .telemetry.resolve import cache_key as telemetry_key
from .traffic import lb_locality
from .traffic.traffic_policy import policy_for


class Translator:
    def __init__(self) -> None:
        self._ctx: PushContext | None = None
        self._eds: dict[
            tuple[str, str, tuple[tuple[str, str], ...] | None, lb_locality.LocalityView | None, bool], Built
        ] = {}

    def context(self, state: MeshState) -> PushContext:
        ctx = self._ctx
        if ctx is None or ctx.state is not state:
            old = self._ctx
            ctx = PushContext(state)
            if old is not None and old.state.version > state.version:
                return ctx  # an older state (a late reader): do not evict the current one
            if old is not None:
                carry_over(old, ctx)
            self._ctx = ctx
            if len(self._eds) > 200_000:
                self._eds.clear()
        return ctx

    def generate(self, state: MeshState, proxy: Proxy, type_url: str) -> Resources:
        ctx = self.context(state)
        res = apply_envoyfilters(ctx, proxy, type_url, self._generate(ctx, proxy, type_url))
        # The same parts give the same Resources object, so streams compare
        # versions and find names in O(1) per push rather than per resource.
        key = ("res", type_url, tuple(id(p) for p in res.parts))
        hit: Resources | None = ctx.memo.get(key)
        if (
            hit is not None
            and len(hit.parts) == len(res.parts)
            and all(a is b for a, b in zip(hit.parts, res.parts, strict=True))
        ):
            return hit
        ctx.memo[key] = res
        return res

    def _generate(self, ctx: PushContext, proxy: Proxy, type_url: str) -> Resources:
        if proxy.type == ProxyType.ROUTER:
            return generate_gateway(ctx, proxy, type_url, self)
        if type_url == TypeUrl.CLUSTER:
            return self.clusters(ctx, proxy)
        if type_url == TypeUrl.ENDPOINT:
            return resources_of(self.endpoints(ctx, proxy))
        if type_url == TypeUrl.LISTENER:
            return self.listeners(ctx, proxy)
        if type_url == TypeUrl.ROUTE:
            return resources_of(self.routes(ctx, proxy))
        return resources_of()

    # --- CDS ---------------------------------------------------------------

    def outbound_clusters(self, ctx: PushContext, proxy: Proxy) -> Part:
        scope = ctx.sidecar_scope(proxy)
        sds = mtls.sds_capable(proxy)

        def make() -> Part:
            out = {}
            origins: dict[str, frozenset[str]] = {}
            scope_reads = ctx.replay(scope.key)
            for svc in scope.services:
                # A cluster depends on the viewer's namespace only through the
                # DestinationRule it sees: keyed by that, each cluster is built and
                # serialized once for every proxy that sees it, whatever its scope.
                dr = ctx.destination_rule(svc.hostname, proxy.namespace)
                dr_key = (dr.meta.namespace, dr.meta.name) if dr is not None else None
                subsets = ("", *cds.subsets_of(ctx, svc, proxy.namespace))
                svc_ref = provenance.service_ref(svc)
                for port in svc.ports:
                    for subset in subsets:
                        key = ("ob-cluster", svc.hostname, port.number, subset, dr_key, sds)
                        hit: tuple[Built, frozenset[str]] | None = ctx.memo.get(key)
                        if hit is None:
                            hit = ctx.memo[key] = self._one_cluster(ctx, svc, port, subset, proxy, sds)
                        b, reads = hit
                        out[b.name] = b
                        # Each cluster's own provenance (its DestinationRule, Service, Sidecar).
                        origins[b.name] = ctx.refs(reads | scope_reads | {svc_ref})
            for fixed in ctx.cached(("cds-fixed",), _fixed_clusters):
                out[fixed.name] = fixed
            return Part(out, origins)

        return ctx.cached(("cds-out", scope.key, proxy.namespace, sds), make)

    @staticmethod
    def _one_cluster(
        ctx: PushContext, svc: Service, port: Port, subset: str, proxy: Proxy, sds: bool
    ) -> tuple[Built, frozenset[str]]:
        """One outbound cluster, built and serialized, with the configs it read."""
        c, reads = ctx.traced(lambda: cds.outbound_cluster(ctx, svc, port, subset, proxy.namespace))
        if not sds:
            mtls.strip_workload_tls(c)  # no sds-grpc cluster: Envoy would reject SDS
        return build(c.name, TypeUrl.CLUSTER, c), reads

    def clusters(self, ctx: PushContext, proxy: Proxy) -> Resources:
        outbound = self.outbound_clusters(ctx, proxy)
        scope = ctx.sidecar_scope(proxy)
        if not proxy.capture_none:
            outbound = capture.outbound_clusters(ctx, proxy, outbound)
            return resources_of(outbound, capture.inbound_clusters(ctx, proxy, scope))
        ingress = tuple(lds.inbound_ports(ctx, proxy, scope))

        def inbound() -> Part:
            ctx.replay(scope.key)  # provenance: the Sidecar's ingress
            # Sidecars only (gateways share outbound_clusters), as istiod.
            passthrough = cds.inbound_passthrough()
            out = {passthrough.name: build(passthrough.name, TypeUrl.CLUSTER, passthrough)}
            for ing in ingress:
                target = lds.parse_endpoint(ing.default_endpoint, ing.port.target_port or ing.port.number)
                c = cds.inbound_cluster(ctx, proxy, ing.port, target)
                out[c.name] = build(c.name, TypeUrl.CLUSTER, c)
            return Part(out)

        return resources_of(outbound, ctx.cached(("cds-in", ingress), inbound))

    # --- EDS ---------------------------------------------------------------

    def eds_for(self, ctx: PushContext, cluster_name: str, viewer_ns: str, proxy: Proxy | None = None) -> Built | None:
        parsed = naming.parse_cluster(cluster_name)
        if parsed is None or parsed[0] != "outbound":
            return None
        _, port, subset, host = parsed
        labels = eds.subset_labels(ctx, host, subset, viewer_ns)
        digest = ctx.state.endpoint_digests.get(host, "")
        # Locality LB makes EDS depend on the proxy's locality: None in the common case.
        view = lb_locality.eds_view(ctx, host, port, subset, viewer_ns, proxy) if proxy else None
        # istiod sends not-ready endpoints (UNHEALTHY) unless the DestinationRule's
        # outlierDetection.minHealthPercent > 0: then only ready ones count.
        # (No DestinationRule, no policy: skip the per-viewer policy lookup.)
        od = (
            policy_for(ctx, host, port, subset, viewer_ns).outlier_detection
            if ctx.destination_rule(host, viewer_ns)
            else None
        )
        ready_only = od is not None and od.min_health_percent > 0
        key = (cluster_name, digest, tuple(sorted(labels.items())) if labels is not None else None, view, ready_only)
        built = self._eds.get(key)
        if built is None:
            eps = ctx.state.endpoints_for(host, port) if labels is not None else ()
            if ready_only:
                eps = tuple(ep for ep in eps if ep.healthy)
            cla = eds.load_assignment(cluster_name, eps, labels or {})
            if view is not None:
                lb_locality.apply(cla, eps, view)
            built = build(cluster_name, TypeUrl.ENDPOINT, cla)
            self._eds[key] = built
        return built

    def endpoints(self, ctx: PushContext, proxy: Proxy) -> Part:
        scope = ctx.sidecar_scope(proxy)
        key = ("eds", scope.key, proxy.namespace, lb_locality.proxy_key(ctx, proxy))

        def make() -> Part:
            prev = ctx.memo.get(("eds-prev", *key[1:]))
            if prev is not None:
                # Only some hosts' endpoints changed (see carry_over): rebuild
                # their clusters' assignments, keep the rest of the part.
                old, hosts = prev
                items = dict(old.items)
                for name in old.items:
                    if name.rsplit("|", 1)[-1] in hosts:
                        b = self.eds_for(ctx, name, proxy.namespace, proxy)
                        if b is None:
                            del items[name]
                        else:
                            items[name] = b
                return Part(items, old.origins)
            out = {}
            clusters = self.outbound_clusters(ctx, proxy)
            for name in clusters.items:
                if not name.startswith("outbound|"):
                    continue
                svc = ctx.state.services.get(name.rsplit("|", 1)[1])
                if svc is None or svc.resolution != Resolution.STATIC:
                    continue
                b = self.eds_for(ctx, name, proxy.namespace, proxy)
                if b is not None:
                    out[name] = b
            # An endpoint group comes from its cluster's inputs (Service, subset's DestinationRule).
            return Part(out, {n: clusters.origins_of(n) for n in out})

        return ctx.cached(key, make)

    # --- LDS ---------------------------------------------------------------

    def listeners(self, ctx: PushContext, proxy: Proxy) -> Resources:
        scope = ctx.sidecar_scope(proxy)

        # With iptables capture, virtualOutbound joins the per-port listeners.
        make_outbound = lds.outbound_listeners if proxy.capture_none else capture_outbound.outbound_listeners

        def finish(lst: Any) -> Built:
            return build(lst.name, TypeUrl.LISTENER, with_tcp_features(ctx, proxy, "outbound", lst))

        def outbound() -> Part:
            ctx.replay(scope.key)  # provenance: every listener depends on the Sidecar scope
            if proxy.capture_none:  # HTTP-only ports' listeners shared across proxies
                return Part({b.name: b for b in lds.outbound_listener_builds(ctx, proxy, scope, finish)})
            return Part({lst.name: finish(lst) for lst in make_outbound(ctx, proxy, scope)})

        # Telemetry (access logs, metrics, tracing) can differ per workload: part of the keys.
        tkey = telemetry_key(ctx, proxy)

        if not proxy.capture_none:
            l4_labels = ctx.cached(("l4-source-labels",), lambda: tcproute.uses_source_labels(ctx))
            labels_key = proxy.labels_key if l4_labels else ()
            key = ("lds-out", scope.key, proxy.interception_mode, labels_key, headless.digest(ctx), tkey)
            return resources_of(ctx.cached(key, outbound), capture.inbound_listeners(ctx, proxy, scope))
        ingress = tuple(lds.inbound_ports(ctx, proxy, scope))

        def inbound() -> Part:
            out = {}
            ctx.replay(scope.key)
            for ing in ingress:
                lst = with_tcp_features(ctx, proxy, "inbound", lds.inbound_listener(ctx, proxy, ing))
                out[lst.name] = build(lst.name, TypeUrl.LISTENER, lst)
            return Part(out)

        # tcp/tls matches on sourceLabels make outbound listeners depend on the proxy's labels.
        l4_labels = ctx.cached(("l4-source-labels",), lambda: tcproute.uses_source_labels(ctx))
        labels_key = proxy.labels_key if l4_labels else ()
        out_part = ctx.cached(("lds-out", scope.key, proxy.capture_none, labels_key, tkey), outbound)
        in_key = ("lds-in", proxy.ip, ingress, mtls.inbound_key(ctx, proxy, (i.port.number for i in ingress)), tkey)
        return resources_of(out_part, ctx.cached(in_key, inbound))

    # --- RDS ---------------------------------------------------------------

    def routes(self, ctx: PushContext, proxy: Proxy) -> Part:
        scope = ctx.sidecar_scope(proxy)
        labels_key = proxy.labels_key if ctx.cached(("uses-source-labels",), lambda: _uses_source_labels(ctx)) else ()

        def make() -> Part:
            out = {}
            ports: set[int] = set()
            for egress in scope.egress:
                for port, is_http in lds._egress_ports(egress, scope.services, proxy):
                    if is_http:
                        ports.add(port)
            origins: dict[str, frozenset[str]] = {}
            scope_reads = ctx.replay(scope.key)
            for port in sorted(ports):
                # Virtual hosts shared across proxies are serialized once (route_share.py).
                (name, body), reads = ctx.traced(
                    lambda: route_share.sidecar_route_bytes(ctx, proxy, scope, port)  # noqa: B023
                )
                out[name] = build_from_bytes(name, TypeUrl.ROUTE, body)
                origins[name] = ctx.refs(reads | scope_reads)
                for sub, sub_reads in ctx.take_sub_origins().items():
                    origins[sub] = ctx.refs(sub_reads)
            return Part(out, origins)

        # Captured proxies route ports without a declared protocol too (sidecar/protocols.py).
        return ctx.cached(("rds", scope.key, proxy.namespace, labels_key, proxy.capture_none), make)


def _fixed_clusters() -> tuple[Built, ...]:
    return tuple(build(c.name, TypeUrl.CLUSTER, c) for c in (cds.blackhole(), cds.passthrough()))


def _uses_source_labels(ctx: PushContext) -> bool:
    for cfg in ctx.state.of_kind("VirtualService"):
        spec: Any = cfg.spec
        for http in spec.http:
            for m in http.match:
                if m.source_labels:
                    return True
    return False


# What each memoized category reads: config kinds, the services, the endpoints
# (True: any endpoint; "cds": only what clusters carry — DNS targets, service
# accounts, ports). A category not listed here is rebuilt for every state.
_CARRY: dict[str, tuple[frozenset[str], bool, bool | str]] = {
    "scope": (frozenset({"Sidecar"}), True, False),
    "sidecar-index": (frozenset({"Sidecar"}), False, False),
    "dr": (frozenset({"DestinationRule"}), True, False),
    "dr-index": (frozenset({"DestinationRule"}), False, False),
    "vs": (frozenset({"VirtualService"}), False, False),
    "uses-source-labels": (frozenset({"VirtualService"}), False, False),
    "l4-source-labels": (frozenset({"VirtualService"}), False, False),
    "locality-used": (frozenset({"DestinationRule"}), False, False),
    "mtls-sans": (frozenset(), True, "cds"),
    "peer-authn-service": (frozenset({"PeerAuthentication"}), True, "cds"),
    "cds-fixed": (frozenset(), False, False),
    "ob-cluster": (
        frozenset({"DestinationRule", "PeerAuthentication", "EnvoyFilter"}),
        True,
        "cds",
    ),
    "cds-out": (
        frozenset({"DestinationRule", "PeerAuthentication", "Sidecar", "EnvoyFilter"}),
        True,
        "cds",
    ),
    "eds": (frozenset({"DestinationRule", "Sidecar", "PeerAuthentication"}), True, True),
    "rds": (frozenset({"VirtualService", "DestinationRule", "Sidecar", "EnvoyFilter"}), True, False),
    "lds-out": (
        frozenset(
            {
                "VirtualService",
                "DestinationRule",
                "Sidecar",
                "EnvoyFilter",
                "PeerAuthentication",
                "AuthorizationPolicy",
                "RequestAuthentication",
                "Telemetry",
            }
        ),
        True,
        False,
    ),
}


def _cds_view(state: MeshState, host: str) -> tuple[object, ...]:
    svc = state.services.get(host)
    eps = state.endpoints.get(host, ())
    return (
        svc.resolution if svc else None,
        frozenset(e.service_account for e in eps),
        frozenset((e.service_port, e.port) for e in eps),
    )


def carry_over(old: PushContext, new: PushContext) -> None:
    """Reuse what the previous state built where its inputs did not change: a
    VirtualService edit rebuilds routes, not every cluster; an endpoint change
    rebuilds endpoints, not listeners. Translation stays a pure function of the
    state: a carried value is one the new state would build identically."""
    a, b = old.state, new.state
    if a.mesh != b.mesh:
        return
    kinds = changed_kinds(a, b)
    services_changed = a.services_digest != b.services_digest
    hosts = {
        h
        for h in set(a.endpoint_digests) | set(b.endpoint_digests)
        if a.endpoint_digests.get(h) != b.endpoint_digests.get(h)
    }
    cds_safe = all(_cds_view(a, h) == _cds_view(b, h) for h in hosts)
    for key, value in old.memo.items():
        if not isinstance(key, tuple) or not key or not isinstance(key[0], str):
            continue
        rule = _CARRY.get(key[0])
        if rule is None:
            continue
        deps, reads_services, reads_endpoints = rule
        if deps & kinds or (reads_services and services_changed):
            continue
        if hosts and (reads_endpoints is True or (reads_endpoints == "cds" and not cds_safe)):
            if key[0] == "eds" and cds_safe:
                # The same clusters; only these hosts' assignments differ.
                new.memo[("eds-prev", *key[1:])] = (value, frozenset(hosts))
            continue
        new.memo[key] = value
        reads = old.memo_reads.get(key)
        if reads is not None:
            new.memo_reads[key] = reads
