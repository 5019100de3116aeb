"""RDS bytes with virtual hosts shared across proxies (issue 18).

A sidecar's route configuration for a port is one resource, but most of its
virtual hosts (a service without a VirtualService) are the same for every proxy
that sees the service: serialized once per state and spliced into each route
configuration's bytes. The result is byte for byte the deterministic
serialization of routes.sidecar_route_config (tests/unit/test_route_share.py)."""

from __future__ import annotations

from collections.abc import Hashable

from istiod_py.cache.resources import _field
from istiod_py.model import Proxy, Service

from ..context import PushContext, SidecarScope
from . import routes

# RouteConfiguration field numbers: name precedes virtual_hosts; every other
# field comes after them in a deterministic serialization.
_NAME, _VIRTUAL_HOSTS = 1, 2


def _shared_key(ctx: PushContext, proxy: Proxy, svc: Service, port: int) -> Hashable | None:
    """What a default virtual host depends on beyond the service and port: the
    bare-name domain (same namespace only) and the DestinationRule seen from the
    proxy's namespace (consistent-hash policy). None: not shareable (a
    VirtualService routes it; its matches may depend on the proxy)."""
    if ctx.vs_for_host(svc.hostname, proxy.namespace, "mesh") is not None:
        return None
    dr = ctx.destination_rule(svc.hostname, proxy.namespace)
    dr_key = (dr.meta.namespace, dr.meta.name) if dr is not None else None
    return ("vhost", svc.hostname, port, svc.namespace == proxy.namespace, dr_key)


def sidecar_route_bytes(ctx: PushContext, proxy: Proxy, scope: SidecarScope, port: int) -> tuple[str, bytes]:
    shell = routes._shell(port)
    name = shell.name
    shell.ClearField("name")
    parts = [_field(_NAME, name.encode())]
    used: set[str] = set()
    for svc, domains, complete in routes._http_vhosts(scope, port, proxy, used):
        key = _shared_key(ctx, proxy, svc, port) if complete else None
        if key is None:
            parts.append(_field(_VIRTUAL_HOSTS, _serialize(routes._vhost(ctx, proxy, svc, port, domains))))
            continue
        hit: bytes | None = ctx.memo.get(key)
        if hit is None:
            hit = ctx.memo[key] = _field(_VIRTUAL_HOSTS, _serialize(routes._vhost(ctx, proxy, svc, port, domains)))
        parts.append(hit)
    # Hosts only a VirtualService names: routed by it, so never shared.
    parts.extend(_field(_VIRTUAL_HOSTS, _serialize(vh)) for vh in routes._vs_only_vhosts(ctx, proxy, scope, port, used))
    catch_all = ctx.cached(
        ("vhost-catch-all", scope.outbound_policy),
        lambda: _field(_VIRTUAL_HOSTS, _serialize(routes._catch_all(scope))),
    )
    parts.append(catch_all)
    parts.append(shell.SerializeToString(deterministic=True))
    return name, b"".join(parts)


def _serialize(msg: object) -> bytes:
    return msg.SerializeToString(deterministic=True)  # type: ignore[attr-defined, no-any-return]
