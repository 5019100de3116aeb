"""CDS additions for a sidecar whose traffic iptables captures (INTERCEPTION_MODE
REDIRECT or TPROXY), as istiod builds them:

- `InboundPassthroughCluster`: where virtualInbound sends traffic for ports no
  service declares: the original destination (the pod's own address), from
  127.0.0.6 so the capture rules let it through to the app;
- `inbound|PORT||` for a service port: the same ORIGINAL_DST shape (the app
  listens on the pod address as it would without a sidecar), unless a Sidecar
  ingress names a `defaultEndpoint`, which stays a STATIC cluster to it;
- `outbound|PORT|SUBSET|HOST` of a headless Kubernetes service: ORIGINAL_DST,
  as istiod's passthrough resolution, so a connection to one endpoint (a
  StatefulSet pod) reaches that endpoint, not whichever the balancer picks.

Auto mTLS on a headless cluster (istiod's applyUpstreamTLSSettings and
BestEffortInferServiceMTLSMode): an ORIGINAL_DST cluster has no endpoints whose
metadata could pick a socket, so istiod does not turn auto-detected
ISTIO_MUTUAL into `transport_socket_matches` there; it decides once for the
whole service port instead. Every endpoint of the port carrying
`tlsMode: istio` (a sidecar) gives the cluster the Istio mTLS socket itself;
no endpoints, or any endpoint without a sidecar, gives plaintext. A
DestinationRule's own TLS setting is kept as it is."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2

from istiod_py.model import Proxy
from istiod_py.model.service import Port

from .. import clusters as cds
from .. import naming
from ..context import PushContext

# The source address of Envoy's connections to its own app; istio-iptables never
# captures it (`-o lo -s 127.0.0.6/32 -j RETURN`).
INBOUND_PASSTHROUGH_BIND = "127.0.0.6"


def _bind_127_0_0_6(c: cluster_pb2.Cluster) -> None:
    c.upstream_bind_config.source_address.CopyFrom(
        address_pb2.SocketAddress(address=INBOUND_PASSTHROUGH_BIND, port_value=0)
    )


def inbound_passthrough() -> cluster_pb2.Cluster:
    c = cds.passthrough()
    c.name = naming.INBOUND_PASSTHROUGH
    _bind_127_0_0_6(c)
    return c


def inbound_cluster(ctx: PushContext, proxy: Proxy, port: Port, default_endpoint: str) -> cluster_pb2.Cluster:
    """`inbound|PORT||` for a captured proxy: to the original destination from
    127.0.0.6, or to the Sidecar ingress `defaultEndpoint` when there is one."""
    if default_endpoint:
        host, _, p = default_endpoint.rpartition(":")
        target = (host, int(p)) if host else (default_endpoint, port.target_port or port.number)
        return cds.inbound_cluster(ctx, proxy, port, target)
    # The STATIC builder gives the name, timeout and protocol options; the
    # destination comes from the connection instead of an endpoint list.
    c = cds.inbound_cluster(ctx, proxy, port, ("127.0.0.1", port.number))
    c.ClearField("load_assignment")
    c.type = cluster_pb2.Cluster.ORIGINAL_DST
    c.lb_policy = cluster_pb2.Cluster.CLUSTER_PROVIDED
    _bind_127_0_0_6(c)
    return c


# The auto-mTLS entry mtls.mesh_mtls puts first in `transport_socket_matches`.
_AUTO_MTLS_MATCH = "tlsMode-istio"


def headless_original_dst(ctx: PushContext, c: cluster_pb2.Cluster, host: str, port: int) -> cluster_pb2.Cluster:
    """The EDS cluster of headless service `host`, made to connect to the original
    destination, with auto mTLS decided for the whole port (module docstring)."""
    out = cluster_pb2.Cluster()
    out.CopyFrom(c)
    auto = [m for m in out.transport_socket_matches if m.name == _AUTO_MTLS_MATCH]
    if auto:
        eps = ctx.state.endpoints_for(host, port)
        sidecars_only = bool(eps) and all(ep.tls_mode == "istio" for ep in eps)
        del out.transport_socket_matches[:]
        if sidecars_only:
            out.transport_socket.CopyFrom(auto[0].transport_socket)
    out.ClearField("eds_cluster_config")
    out.type = cluster_pb2.Cluster.ORIGINAL_DST
    out.lb_policy = cluster_pb2.Cluster.CLUSTER_PROVIDED
    out.ClearField("least_request_lb_config")
    out.ClearField("common_lb_config")
    return out
