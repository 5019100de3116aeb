"""Extension providers (meshConfig.extensionProviders) as telemetry features use them."""

from __future__ import annotations

from istio.mesh.v1alpha1.telemetry_config_pb2 import ExtensionProvider

from .. import naming
from ..context import PushContext


def provider(ctx: PushContext, name: str) -> ExtensionProvider | None:
    return ctx.state.mesh.telemetry.provider(name)


def service_cluster(ctx: PushContext, service: str, port: int) -> str | None:
    """The outbound cluster of a provider's `service` (`host` or `ns/host`) and
    `port`, as istiod's LookupCluster: the service must be in the registry."""
    ns, _, host = service.rpartition("/")
    if "." not in host:
        host = f"{host}.{ns or 'default'}.svc.{ctx.domain}"
    svc = ctx.state.services.get(host)
    if svc is None or (ns and svc.namespace != ns) or svc.port(port) is None:
        return None
    return naming.outbound_cluster(port, svc.hostname)
