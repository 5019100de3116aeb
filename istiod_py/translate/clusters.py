"""CDS: outbound clusters per service port and subset, inbound clusters to the
local app, and the catch-all clusters istiod always sends."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.network.dns_resolver.cares.v3 import cares_dns_resolver_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import any_pb2, duration_pb2

from istiod_py.model import Proxy, Resolution, Service
from istiod_py.model.service import Port

from . import naming
from .context import PushContext
from .features import apply_cluster_features
from .structs import set_string_list

H2_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def ads_config_source() -> config_source_pb2.ConfigSource:
    """A fresh copy of the ADS config source (callers may change theirs)."""
    out = config_source_pb2.ConfigSource()
    out.CopyFrom(ADS_CONFIG_SOURCE)
    return out


def _ads_config_source() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
        initial_fetch_timeout=duration_pb2.Duration(seconds=0),
    )


# The prototype every EDS cluster and RDS reference copies: never changed in place.
ADS_CONFIG_SOURCE = _ads_config_source()


def socket_address(host: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(address=host, port_value=port))


def static_load_assignment(name: str, targets: list[tuple[str, int]]) -> endpoint_pb2.ClusterLoadAssignment:
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name,
        endpoints=[
            endpoint_components_pb2.LocalityLbEndpoints(
                lb_endpoints=[
                    endpoint_components_pb2.LbEndpoint(
                        endpoint=endpoint_components_pb2.Endpoint(address=socket_address(h, p))
                    )
                    for h, p in targets
                ]
            )
        ],
    )


def _http2(cluster: cluster_pb2.Cluster) -> None:
    opts = http_protocol_options_pb2.HttpProtocolOptions(
        explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
            http2_protocol_options=protocol_pb2.Http2ProtocolOptions()
        )
    )
    packed = any_pb2.Any()
    packed.Pack(opts)
    cluster.typed_extension_protocol_options[H2_OPTIONS_KEY].CopyFrom(packed)


def _istiod_dns(c: cluster_pb2.Cluster) -> None:
    """istiod's DNS settings: re-resolve every 60 s or at the record's TTL, with
    100 ms of jitter (PILOT_DNS_JITTER_DURATION), through c-ares with at most 100
    UDP queries per socket (PILOT_DNS_CARES_UDP_MAX_QUERIES)."""
    c.dns_refresh_rate.seconds = 60
    c.respect_dns_ttl = True
    c.dns_jitter.nanos = 100_000_000
    c.typed_dns_resolver_config.name = "envoy.network.dns_resolver.cares"
    cares = cares_dns_resolver_pb2.CaresDnsResolverConfig()
    cares.udp_max_queries.value = 100
    c.typed_dns_resolver_config.typed_config.Pack(cares)


def _timeout(ctx: PushContext) -> duration_pb2.Duration:
    secs = ctx.state.mesh.connect_timeout_s
    return duration_pb2.Duration(seconds=int(secs), nanos=int((secs % 1) * 1e9))


def outbound_cluster(ctx: PushContext, svc: Service, port: Port, subset: str, viewer_ns: str) -> cluster_pb2.Cluster:
    name = naming.outbound_cluster(port.number, svc.hostname, subset)
    c = cluster_pb2.Cluster(name=name, connect_timeout=_timeout(ctx))
    if svc.resolution in (Resolution.DNS, Resolution.DNS_ROUND_ROBIN):
        c.type = cluster_pb2.Cluster.STRICT_DNS if svc.resolution == Resolution.DNS else cluster_pb2.Cluster.LOGICAL_DNS
        c.dns_lookup_family = cluster_pb2.Cluster.V4_ONLY
        _istiod_dns(c)
        targets = [(ep.address, ep.port) for ep in ctx.state.endpoints_for(svc.hostname, port.number)]
        if not targets:
            targets = [(svc.hostname, port.target_port or port.number)]
        if svc.resolution == Resolution.DNS_ROUND_ROBIN:
            targets = targets[:1]
        c.load_assignment.CopyFrom(static_load_assignment(name, targets))
    elif svc.resolution == Resolution.NONE:
        c.type = cluster_pb2.Cluster.ORIGINAL_DST
        c.lb_policy = cluster_pb2.Cluster.CLUSTER_PROVIDED
    else:
        c.type = cluster_pb2.Cluster.EDS
        c.eds_cluster_config.eds_config.CopyFrom(ADS_CONFIG_SOURCE)
        c.eds_cluster_config.service_name = name
    if port.protocol.is_http2:
        _http2(c)
    # Panic mode off, as istiod 1.31+ (PILOT_AUTO_SEND_UNHEALTHY_ENDPOINTS): with
    # most endpoints unhealthy or ejected Envoy answers 503 ("no healthy upstream")
    # instead of spreading traffic over all of them. A DestinationRule
    # outlierDetection.minHealthPercent replaces it (traffic/traffic_policy.py).
    c.common_lb_config.healthy_panic_threshold.SetInParent()
    istio = c.metadata.filter_metadata["istio"]
    set_string_list(istio, "services", [_service_metadata(svc)])
    dr = ctx.destination_rule(svc.hostname, viewer_ns)
    if dr is not None:
        # Which DestinationRule shaped this cluster (istiod's AddConfigInfoMetadata).
        config = naming.config_path("destination-rule", dr.meta.namespace, dr.meta.name)
        istio.fields["config"].string_value = config
        if subset:
            istio.fields["subset"].string_value = subset
    apply_cluster_features(ctx, c, svc, port, subset, viewer_ns)
    return c


def subsets_of(ctx: PushContext, svc: Service, viewer_ns: str) -> list[str]:
    dr = ctx.destination_rule(svc.hostname, viewer_ns)
    if dr is None:
        return []
    spec: Any = dr.spec
    return [s.name for s in spec.subsets]


def outbound_keys(
    ctx: PushContext, services: tuple[Service, ...], viewer_ns: str
) -> Iterator[tuple[Service, Port, str]]:
    """(service, port, subset) of every outbound cluster, in output order (the
    translator builds them one by one to trace each cluster's provenance)."""
    for svc in services:
        for port in svc.ports:
            yield svc, port, ""
            for subset in subsets_of(ctx, svc, viewer_ns):
                yield svc, port, subset


def outbound_clusters(ctx: PushContext, services: tuple[Service, ...], viewer_ns: str) -> list[cluster_pb2.Cluster]:
    return [
        outbound_cluster(ctx, svc, port, subset, viewer_ns)
        for svc, port, subset in outbound_keys(ctx, services, viewer_ns)
    ]


def blackhole() -> cluster_pb2.Cluster:
    return cluster_pb2.Cluster(
        name=naming.BLACKHOLE,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=duration_pb2.Duration(seconds=10),
    )


def default_circuit_breakers() -> circuit_breaker_pb2.CircuitBreakers:
    """istiod's getDefaultCircuitBreakerThresholds: no limits (Envoy's own
    defaults, 1024 connections and 3 parallel retries, would 503 under load)."""
    return circuit_breaker_pb2.CircuitBreakers(
        thresholds=[
            circuit_breaker_pb2.CircuitBreakers.Thresholds(
                max_connections={"value": 4294967295},
                max_pending_requests={"value": 4294967295},
                max_requests={"value": 4294967295},
                max_retries={"value": 4294967295},
            )
        ]
    )


def _downstream_protocol(cluster: cluster_pb2.Cluster, idle_timeout_s: int = 0) -> None:
    """Speak upstream what the client spoke downstream (HTTP/1.1 or h2)."""
    opts = http_protocol_options_pb2.HttpProtocolOptions()
    opts.use_downstream_protocol_config.http_protocol_options.SetInParent()
    opts.use_downstream_protocol_config.http2_protocol_options.SetInParent()
    if idle_timeout_s:
        opts.common_http_protocol_options.idle_timeout.seconds = idle_timeout_s
    cluster.typed_extension_protocol_options[H2_OPTIONS_KEY].Pack(opts)


def passthrough() -> cluster_pb2.Cluster:
    """istiod's PassthroughCluster: to the original destination, HTTP in the
    client's protocol with a 5 minute idle timeout."""
    c = cluster_pb2.Cluster(
        name=naming.PASSTHROUGH,
        type=cluster_pb2.Cluster.ORIGINAL_DST,
        lb_policy=cluster_pb2.Cluster.CLUSTER_PROVIDED,
        connect_timeout=duration_pb2.Duration(seconds=10),
        circuit_breakers=default_circuit_breakers(),
    )
    _downstream_protocol(c, idle_timeout_s=300)
    return c


INBOUND_PASSTHROUGH_SOURCE = "127.0.0.6"


def inbound_passthrough() -> cluster_pb2.Cluster:
    """istiod's InboundPassthroughCluster: PassthroughCluster for traffic captured
    inbound to a port no Service declares, sent from 127.0.0.6 so that the
    capture rules (which exempt that source) do not loop it back into Envoy.
    Used by the capture listener (virtualInbound) only."""
    c = passthrough()
    c.name = naming.INBOUND_PASSTHROUGH
    c.upstream_bind_config.source_address.CopyFrom(socket_address(INBOUND_PASSTHROUGH_SOURCE, 0).socket_address)
    return c


def _service_metadata(svc: Service) -> dict[str, str]:
    """istiod's istio.services entry: FQDN, name (a ServiceEntry's is its host) and namespace."""
    kube = svc.hostname.split(".")[2:3] == ["svc"]
    name = svc.hostname.split(".")[0] if kube else svc.hostname
    return {"host": svc.hostname, "name": name, "namespace": svc.namespace}


def inbound_cluster(ctx: PushContext, proxy: Proxy, port: Port, target: tuple[str, int]) -> cluster_pb2.Cluster:
    name = naming.inbound_cluster(port.number)
    c = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=_timeout(ctx),
        load_assignment=static_load_assignment(name, [target]),
        circuit_breakers=default_circuit_breakers(),  # as istiod: no limits to the local app
    )
    if port.protocol.is_http2:
        _http2(c)
    services: list[dict[str, str]] = []
    for ep in ctx.state.endpoints_by_address.get(proxy.ip, ()):
        svc = ctx.state.services.get(ep.service)
        if svc is not None and ep.port == port.number and _service_metadata(svc) not in services:
            services.append(_service_metadata(svc))
    if services:
        # The services this port serves (telemetry and EnvoyFilter matches read it).
        c.metadata.filter_metadata["istio"].update({"services": sorted(services, key=lambda s: s["host"])})
    return c
