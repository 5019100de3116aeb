"""Headless Kubernetes services (clusterIP: None, `Service.headless`) for captured sidecars.

With no VIP to match, istiod gives a headless service's opaque (non-HTTP) port
one outbound listener per endpoint, `ENDPOINT_IP_PORT`, so a client that
resolved a pod address through DNS (StatefulSets: `mongo-0.mongo`) is still
routed to the service's cluster. listeners.py matches those chains on the
endpoint addresses; capture_outbound.py turns each address into its listener.
captureMode NONE keeps its bound listener as before."""

from __future__ import annotations

from istiod_py.model import Proxy, Resolution, Service

from ..context import PushContext


def is_headless(svc: Service) -> bool:
    return svc.headless and svc.resolution == Resolution.STATIC


def endpoint_addresses(ctx: PushContext, proxy: Proxy, svc: Service, port: int) -> tuple[str, ...]:
    """The addresses a captured proxy's chains for `svc:port` match ((): not headless)."""
    if proxy.capture_none or not is_headless(svc):
        return ()
    return tuple(sorted({ep.address for ep in ctx.state.endpoints_for(svc.hostname, port)}))


def digest(ctx: PushContext) -> tuple[tuple[str, str], ...]:
    """Endpoint versions of every headless service: outbound listeners of captured
    proxies depend on them (the listener cache key includes this)."""

    def build() -> tuple[tuple[str, str], ...]:
        state = ctx.state
        return tuple(
            sorted((h, state.endpoint_digests.get(h, "")) for h, svc in state.services.items() if is_headless(svc))
        )

    return ctx.cached(("headless-digest",), build)
