"""EDS: one ClusterLoadAssignment per outbound cluster, grouped by locality."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from envoy.config.core.v3 import base_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_pb2

from istiod_py.model import Endpoint, labels_match

from .context import PushContext
from .structs import set_strings
from .telemetry.peer import PEER_METADATA, peer_metadata


def subset_labels(ctx: PushContext, host: str, subset: str, viewer_ns: str) -> Mapping[str, str] | None:
    """The labels of a DestinationRule subset; None when the subset is not defined
    (istiod then sends no endpoints: traffic to it fails with 503, as in Istio)."""
    if not subset:
        return {}
    dr = ctx.destination_rule(host, viewer_ns)
    if dr is None:
        return None
    spec: Any = dr.spec
    for s in spec.subsets:
        if s.name == subset:
            return dict(s.labels)
    return None


CLUSTER_ID = "Kubernetes"  # istiod's default CLUSTER_ID


def _first_label(labels: Mapping[str, str], keys: Sequence[str], default: str) -> str:
    for k in keys:
        if labels.get(k):
            return labels[k]
    return default


def workload_metadata(ep: Endpoint) -> str:
    """istiod's compressed telemetry label for an endpoint (util.go
    AppendLbEndpointMetadata): `workload;namespace;canonical name;canonical
    revision;cluster id`. Telemetry on the client side reads the server's
    identity from it when no metadata exchange happened."""
    name = _first_label(
        ep.labels, ("service.istio.io/canonical-name", "app.kubernetes.io/name", "app"), ep.workload_name
    )
    revision = _first_label(
        ep.labels, ("service.istio.io/canonical-revision", "app.kubernetes.io/version", "version"), "latest"
    )
    if revision == "latest":
        revision = ""  # istiod does not send the default
    return f"{ep.workload_name};{ep.namespace};{name};{revision};{CLUSTER_ID}"


def _locality(loc: str) -> base_pb2.Locality:
    region, _, rest = loc.partition("/")
    zone, _, sub = rest.partition("/")
    return base_pb2.Locality(region=region, zone=zone, sub_zone=sub)


def load_assignment(
    cluster_name: str, endpoints: Sequence[Endpoint], labels: Mapping[str, str]
) -> endpoint_pb2.ClusterLoadAssignment:
    by_loc: dict[str, list[Endpoint]] = {}
    for ep in endpoints:
        if labels and not labels_match(labels, ep.labels):
            continue
        by_loc.setdefault(ep.locality, []).append(ep)
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster_name)
    for loc in sorted(by_loc):
        group = cla.endpoints.add()
        if loc:
            group.locality.CopyFrom(_locality(loc))
        total = 0
        for ep in sorted(by_loc[loc], key=lambda e: (e.address, e.port)):
            lb = group.lb_endpoints.add()
            # As socket_address(), set in place (no message built and copied per endpoint).
            sa = lb.endpoint.address.socket_address
            sa.address = ep.address
            sa.port_value = ep.port
            lb.load_balancing_weight.value = max(ep.weight, 1)
            lb.health_status = health_check_pb2.HEALTHY if ep.healthy else health_check_pb2.UNHEALTHY
            total += max(ep.weight, 1)
            fm = lb.metadata.filter_metadata
            if ep.tls_mode:
                fm["envoy.transport_socket_match"].fields["tlsMode"].string_value = ep.tls_mode
            fm["istio"].fields["workload"].string_value = workload_metadata(ep)
            # The peer's workload labels for request metrics (telemetry/metrics.py reads them
            # with CEL from xds.upstream_host_metadata): what Istio's metadata exchange carries.
            set_strings(fm[PEER_METADATA], peer_metadata(ep))
        group.load_balancing_weight.value = total
    return cla
