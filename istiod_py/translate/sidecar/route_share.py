"""RDS bytes with virtual hosts shared across proxies (issue 18).

A sidecar's route configuration for a port is one resource, but most of its
virtual hosts (a service without a VirtualService) are the same for every proxy
that sees the service: serialized once per state and spliced into each route
configuration's bytes. The result is byte for byte the deterministic
serialization of routes.sidecar_route_config (tests/unit/test_route_share.py)."""

from __future__ import annotations

import functools
from collections.abc import Hashable

from envoy.config.route.v3 import route_components_pb2 as rc

from istiod_py.cache.resources import _field
from istiod_py.config.model import Config
from istiod_py.model import Proxy, Service

from .. import naming
from ..context import PushContext, SidecarScope
from ..route import delegate
from . import routes

# RouteConfiguration field numbers: name precedes virtual_hosts; every other
# field comes after them in a deterministic serialization.
_NAME, _VIRTUAL_HOSTS = 1, 2


def _dr_id(dr: Config | None) -> tuple[str, str] | None:
    return (dr.meta.namespace, dr.meta.name) if dr is not None else None


def _shared_key(ctx: PushContext, proxy: Proxy, svc: Service, port: int) -> Hashable | None:
    """What a default virtual host depends on beyond the service and port: the
    bare-name domain (same namespace only) and the DestinationRule seen from the
    proxy's namespace (consistent-hash policy). For a host a VirtualService
    routes, a `("vhost-vs", ...)` key whose value is resolved further by
    `_vs_variant`. None: not shareable (the VirtualService's matches read the
    proxy's labels or namespace)."""
    vs = ctx.vs_for_host(svc.hostname, proxy.namespace, "mesh")
    same_ns = svc.namespace == proxy.namespace
    if vs is not None:
        if ctx.cached(("vs-reads-proxy", vs.meta.namespace, vs.meta.name), lambda: _reads_proxy(ctx, vs)):
            return None
        return ("vhost-vs", svc.hostname, port, same_ns, vs.meta.namespace, vs.meta.name)
    return ("vhost", svc.hostname, port, same_ns, _dr_id(ctx.destination_rule(svc.hostname, proxy.namespace)))


def _reads_proxy(ctx: PushContext, vs: Config) -> bool:
    """Whether a VirtualService's routes depend on the proxy beyond its namespace's
    DestinationRules: matches on sourceLabels or sourceNamespace (httproute.match_applies)."""
    return any(m.source_labels or m.source_namespace for http in delegate.http_routes(ctx, vs) for m in http.match)


def _route_hosts(vh: rc.VirtualHost) -> tuple[str, ...]:
    """The hosts of a virtual host's outbound route clusters: the only place a
    VirtualService's routes read the viewer's namespace is the DestinationRule
    of these (hash policy, traffic_policy.hash_policy)."""
    hosts: dict[str, None] = {}
    for r in vh.routes:
        if not r.HasField("route"):
            continue
        a = r.route
        names = [w.name for w in a.weighted_clusters.clusters] if a.HasField("weighted_clusters") else [a.cluster]
        for name in names:
            parsed = naming.parse_cluster(name)
            if parsed is not None and parsed[0] == "outbound":
                hosts[parsed[3]] = None
    return tuple(hosts)


_Shared = tuple[bytes, frozenset[str]]  # a virtual host's bytes and its provenance


def _lookup(ctx: PushContext, proxy: Proxy, key: Hashable) -> _Shared | None:
    if not (isinstance(key, tuple) and key[0] == "vhost-vs"):
        return ctx.memo.get(key)
    # A VirtualService's virtual host is shared by every namespace that sees the
    # same DestinationRules for its routes' destinations (found by the first build).
    entry: tuple[tuple[str, ...], dict[Hashable, _Shared]] | None = ctx.memo.get(key)
    if entry is None:
        return None
    hosts, variants = entry
    return variants.get(_drs_seen(ctx, proxy, hosts))


def _store(ctx: PushContext, proxy: Proxy, key: Hashable, vh: rc.VirtualHost, hit: _Shared) -> None:
    if not (isinstance(key, tuple) and key[0] == "vhost-vs"):
        ctx.memo[key] = hit
        return
    entry: tuple[tuple[str, ...], dict[Hashable, _Shared]] | None = ctx.memo.get(key)
    if entry is None:
        entry = ctx.memo[key] = (_route_hosts(vh), {})
    entry[1][_drs_seen(ctx, proxy, entry[0])] = hit


def _drs_seen(ctx: PushContext, proxy: Proxy, hosts: tuple[str, ...]) -> Hashable:
    return tuple(_dr_id(ctx.destination_rule(h, proxy.namespace)) for h in hosts)


def sidecar_route_bytes(ctx: PushContext, proxy: Proxy, scope: SidecarScope, port: int) -> tuple[str, bytes]:
    name, tail = _shell_bytes(port)
    parts = [_field(_NAME, name.encode())]
    used: set[str] = set()
    for svc, domains, complete in routes._http_vhosts(scope, port, proxy, used):
        key = _shared_key(ctx, proxy, svc, port) if complete else None
        if key is None:
            parts.append(_field(_VIRTUAL_HOSTS, _serialize(routes._vhost(ctx, proxy, svc, port, domains))))
            continue
        origin = routes.vhost_origin_key(port, naming.vhost(svc.hostname, port))
        hit = _lookup(ctx, proxy, key)
        if hit is None:
            hit = _default_vhost(ctx, proxy, svc, port, domains, key, origin)
        else:
            # Shared bytes, same provenance: recorded for this proxy's route config too.
            ctx.sub_origins[origin] = hit[1]
            for ref in hit[1]:
                ctx.note(ref)
        parts.append(hit[0])
    # Hosts only a VirtualService names: routed by it, so never shared.
    parts.extend(_field(_VIRTUAL_HOSTS, _serialize(vh)) for vh in routes._vs_only_vhosts(ctx, proxy, scope, port, used))
    catch_all = ctx.cached(
        ("vhost-catch-all", scope.outbound_policy),
        lambda: _field(_VIRTUAL_HOSTS, _serialize(routes._catch_all(scope))),
    )
    parts.append(catch_all)
    parts.append(tail)
    return name, b"".join(parts)


# VirtualHost fields: name=1, domains=2, routes=3; include_request_attempt_count=14
# (varint true) is the only field routes._vhost sets after them.
_VH_NAME, _VH_DOMAINS = 1, 2
_VH_TAIL = b"\x70\x01"


def _default_vhost(
    ctx: PushContext, proxy: Proxy, svc: Service, port: int, domains: list[str], key: Hashable, origin: str
) -> _Shared:
    """Builds and stores a shared virtual host. A service's default virtual host
    (no VirtualService) differs between proxies in its namespace and the others
    only in its domains (the bare-name forms): its routes' bytes are kept under
    the key without the namespace flag and reused with the other domains."""
    if not (isinstance(key, tuple) and key[0] == "vhost"):
        vh = routes._vhost(ctx, proxy, svc, port, domains)
        hit = (_field(_VIRTUAL_HOSTS, _serialize(vh)), ctx.sub_origins.get(origin, frozenset()))
        _store(ctx, proxy, key, vh, hit)
        return hit
    _, host, _, _, dr = key
    routes_key = ("vhost-routes", host, port, dr)
    name = naming.vhost(host, port)
    head = b"".join([_field(_VH_NAME, name.encode()), *(_field(_VH_DOMAINS, d.encode()) for d in domains)])
    shared: tuple[bytes, frozenset[str]] | None = ctx.memo.get(routes_key)
    if shared is None:
        vh = routes._vhost(ctx, proxy, svc, port, domains)
        body = _serialize(vh)
        reads = ctx.sub_origins.get(origin, frozenset())
        if body.startswith(head) and body.endswith(_VH_TAIL):
            ctx.memo[routes_key] = (body[len(head) : -len(_VH_TAIL)], reads)
    else:
        route_bytes, reads = shared
        body = head + route_bytes + _VH_TAIL
        # The same routes, the same provenance: recorded as _vhost's trace would.
        ctx.sub_origins[origin] = reads
        for ref in reads:
            ctx.note(ref)
    hit = (_field(_VIRTUAL_HOSTS, body), reads)
    ctx.memo[key] = hit
    return hit


@functools.lru_cache(maxsize=1024)
def _shell_bytes(port: int) -> tuple[str, bytes]:
    """The route configuration's name, and its fields after the virtual hosts
    (the shell without its name): the same for every proxy, per port."""
    shell = routes._shell(port)
    name = shell.name
    shell.ClearField("name")
    return name, shell.SerializeToString(deterministic=True)


def _serialize(msg: object) -> bytes:
    return msg.SerializeToString(deterministic=True)  # type: ignore[attr-defined, no-any-return]
