"""DestinationRule `trafficPolicy` -> outbound cluster settings, as istiod maps them.

The effective policy of a cluster (service, port, subset, viewer namespace) is
merged the way Istio merges it (`MergeTrafficPolicy`): the top-level policy with
its `portLevelSettings` for the port applied, then the subset's policy, then the
subset's `portLevelSettings` for the port. Each of loadBalancer, connectionPool,
outlierDetection and tls is replaced as a whole by the more specific level; it
is never merged field by field.

Every outbound cluster gets Istio's defaults even without a DestinationRule:
unlimited circuit-breaker thresholds and the LEAST_REQUEST load balancer.

Consistent hashing needs the hash key on the route: `hash_policy` adds it to
routes whose (weighted) cluster uses a consistentHash load balancer.
Locality failover/distribution is done in EDS (see lb_locality.py).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import protocol_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo
from istio.networking.v1alpha3 import destination_rule_pb2 as dr_pb

from istiod_py.model import Resolution, Service
from istiod_py.model.service import Port

from .. import naming
from ..context import PushContext
from ..features import RouteInput, cluster_feature, route_feature
from ..provenance import note_destination_rule_fields
from .upstream_tls import apply_client_tls

MAX_U32 = 4294967295
H2_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

SimpleLB = dr_pb.LoadBalancerSettings.SimpleLB
H2Upgrade = dr_pb.ConnectionPoolSettings.HTTPSettings.H2UpgradePolicy


@dataclass(frozen=True)
class TrafficPolicy:
    """The effective policy for one cluster; None where no level sets the field."""

    load_balancer: dr_pb.LoadBalancerSettings | None = None
    connection_pool: dr_pb.ConnectionPoolSettings | None = None
    outlier_detection: dr_pb.OutlierDetection | None = None
    tls: dr_pb.ClientTLSSettings | None = None

    @property
    def empty(self) -> bool:
        return (
            self.load_balancer is None
            and self.connection_pool is None
            and self.outlier_detection is None
            and self.tls is None
        )


EMPTY = TrafficPolicy()


def _field(msg: Any, name: str) -> Any:
    return getattr(msg, name) if msg.HasField(name) else None


def _overlay(base: TrafficPolicy, tp: Any) -> TrafficPolicy:
    """`tp` (a TrafficPolicy or PortTrafficPolicy) replaces each field it sets."""
    return TrafficPolicy(
        load_balancer=_field(tp, "load_balancer") or base.load_balancer,
        connection_pool=_field(tp, "connection_pool") or base.connection_pool,
        outlier_detection=_field(tp, "outlier_detection") or base.outlier_detection,
        tls=_field(tp, "tls") or base.tls,
    )


def _with_port(base: TrafficPolicy, tp: dr_pb.TrafficPolicy, port: int) -> TrafficPolicy:
    merged = _overlay(base, tp)
    for pls in tp.port_level_settings:
        if pls.HasField("port") and pls.port.number == port:
            return _overlay(merged, pls)
    return merged


def merge(spec: dr_pb.DestinationRule, port: int, subset: str) -> TrafficPolicy:
    """Istio's MergeTrafficPolicy for one port and subset of a DestinationRule."""
    policy = EMPTY
    if spec.HasField("traffic_policy"):
        policy = _with_port(policy, spec.traffic_policy, port)
    if subset:
        for s in spec.subsets:
            if s.name == subset and s.HasField("traffic_policy"):
                policy = _with_port(policy, s.traffic_policy, port)
                break
    return policy


def policy_for(ctx: PushContext, host: str, port: int, subset: str, viewer_ns: str) -> TrafficPolicy:
    """The effective traffic policy of `outbound|port|subset|host` seen from `viewer_ns`."""

    def build() -> TrafficPolicy:
        dr = ctx.destination_rule(host, viewer_ns)
        if dr is None:
            return EMPTY
        note_destination_rule_fields(ctx, dr, port, subset)  # provenance: which fields shaped the cluster
        spec: Any = dr.spec
        return merge(spec, port, subset)

    key: Hashable = ("traffic-policy", host, port, subset, viewer_ns)
    return ctx.cached(key, build)


# --- cluster -----------------------------------------------------------------------------


@cluster_feature
def traffic_policy(
    ctx: PushContext, cluster: cluster_pb2.Cluster, svc: Service, port: Port, subset: str, viewer_ns: str
) -> None:
    policy = policy_for(ctx, svc.hostname, port.number, subset, viewer_ns)
    apply_connection_pool(cluster, policy.connection_pool, port)
    apply_outlier_detection(cluster, policy.outlier_detection)
    apply_load_balancer(cluster, policy.load_balancer)
    if policy.tls is not None:
        apply_client_tls(cluster, policy.tls, port)


# connection pool


def default_thresholds() -> circuit_breaker_pb2.CircuitBreakers.Thresholds:
    # As istiod: no limits by default (Envoy's 1024 trips during pod churn). No
    # track_remaining: istiod 1.29+ leaves the remaining_* gauges off to save
    # proxy memory (DISABLE_TRACK_REMAINING_CB_METRICS, default true).
    t = circuit_breaker_pb2.CircuitBreakers.Thresholds()
    t.max_connections.value = MAX_U32
    t.max_pending_requests.value = MAX_U32
    t.max_requests.value = MAX_U32
    t.max_retries.value = MAX_U32
    return t


def _http_options(cluster: cluster_pb2.Cluster) -> hpo.HttpProtocolOptions:
    opts = hpo.HttpProtocolOptions()
    if H2_OPTIONS_KEY in cluster.typed_extension_protocol_options:
        cluster.typed_extension_protocol_options[H2_OPTIONS_KEY].Unpack(opts)
    return opts


def _store_http_options(cluster: cluster_pb2.Cluster, opts: hpo.HttpProtocolOptions) -> None:
    cluster.typed_extension_protocol_options[H2_OPTIONS_KEY].Pack(opts)


def apply_connection_pool(cluster: cluster_pb2.Cluster, pool: dr_pb.ConnectionPoolSettings | None, port: Port) -> None:
    threshold = default_thresholds()
    idle_timeout = None
    max_conn_duration = None
    max_requests_per_conn = 0
    max_streams = 0
    http = pool.http if pool is not None and pool.HasField("http") else None
    tcp = pool.tcp if pool is not None and pool.HasField("tcp") else None
    if http is not None:
        # Envoy applies max_requests to HTTP/2 and max_pending_requests to HTTP/1.1.
        if http.http2_max_requests > 0:
            threshold.max_requests.value = http.http2_max_requests
        if http.http1_max_pending_requests > 0:
            threshold.max_pending_requests.value = http.http1_max_pending_requests
        if http.max_retries > 0:
            threshold.max_retries.value = http.max_retries
        idle_timeout = _field(http, "idle_timeout")
        max_requests_per_conn = max(http.max_requests_per_connection, 0)
        max_streams = max(http.max_concurrent_streams, 0)
    if tcp is not None:
        if tcp.HasField("connect_timeout"):
            cluster.connect_timeout.CopyFrom(tcp.connect_timeout)
        if tcp.max_connections > 0:
            threshold.max_connections.value = tcp.max_connections
        max_conn_duration = _field(tcp, "max_connection_duration")
        if idle_timeout is None:
            idle_timeout = _field(tcp, "idle_timeout")
        if tcp.HasField("tcp_keepalive"):
            ka = cluster.upstream_connection_options.tcp_keepalive
            ka.SetInParent()  # an empty message turns SO_KEEPALIVE on with OS defaults
            if tcp.tcp_keepalive.probes > 0:
                ka.keepalive_probes.value = tcp.tcp_keepalive.probes
            if tcp.tcp_keepalive.HasField("time"):
                ka.keepalive_time.value = int(tcp.tcp_keepalive.time.seconds)
            if tcp.tcp_keepalive.HasField("interval"):
                ka.keepalive_interval.value = int(tcp.tcp_keepalive.interval.seconds)
    cluster.circuit_breakers.CopyFrom(circuit_breaker_pb2.CircuitBreakers(thresholds=[threshold]))

    if cluster.type == cluster_pb2.Cluster.ORIGINAL_DST and cluster.name == naming.PASSTHROUGH:
        return
    upgrade = (
        http is not None
        and http.h2_upgrade_policy == H2Upgrade.UPGRADE
        and port.protocol.is_http
        and not port.protocol.is_http2
    )
    use_client = http is not None and http.use_client_protocol
    if not (idle_timeout or max_conn_duration or max_requests_per_conn or max_streams or upgrade or use_client):
        return
    opts = _http_options(cluster)
    if upgrade:
        opts.explicit_http_config.http2_protocol_options.SetInParent()
    if use_client:
        # Same protocol upstream as downstream (Istio's setUseDownstreamProtocol).
        opts.ClearField("explicit_http_config")
        opts.use_downstream_protocol_config.http_protocol_options.SetInParent()
        opts.use_downstream_protocol_config.http2_protocol_options.SetInParent()
    common = opts.common_http_protocol_options
    if idle_timeout is not None:
        common.idle_timeout.CopyFrom(idle_timeout)
    if max_requests_per_conn > 0:
        common.max_requests_per_connection.value = max_requests_per_conn
    if max_conn_duration is not None:
        common.max_connection_duration.CopyFrom(max_conn_duration)
    if max_streams > 0:
        h2 = _h2_options_of(opts)
        if h2 is not None:
            h2.max_concurrent_streams.value = max_streams
    if opts.WhichOneof("upstream_protocol_options") is None:
        # Envoy requires a protocol choice in HttpProtocolOptions.
        opts.explicit_http_config.http_protocol_options.SetInParent()
    _store_http_options(cluster, opts)


def _h2_options_of(opts: hpo.HttpProtocolOptions) -> protocol_pb2.Http2ProtocolOptions | None:
    if opts.HasField("explicit_http_config") and opts.explicit_http_config.HasField("http2_protocol_options"):
        return opts.explicit_http_config.http2_protocol_options
    if opts.HasField("use_downstream_protocol_config"):
        return opts.use_downstream_protocol_config.http2_protocol_options
    return None


# outlier detection


def apply_outlier_detection(cluster: cluster_pb2.Cluster, od: dr_pb.OutlierDetection | None) -> None:
    if od is None:
        return
    out = outlier_detection_pb2.OutlierDetection()
    out.enforcing_success_rate.value = 0  # Istio never uses success-rate ejection
    if od.consecutive_errors > 0:
        # Deprecated field: as Istio, it counts gateway errors (502, 503, 504) only.
        out.consecutive_gateway_failure.value = od.consecutive_errors
        out.enforcing_consecutive_gateway_failure.value = 100
    if od.HasField("consecutive_5xx_errors"):
        v = od.consecutive_5xx_errors.value
        out.consecutive_5xx.value = v
        out.enforcing_consecutive_5xx.value = 100 if v > 0 else 0
    if od.HasField("consecutive_gateway_errors"):
        v = od.consecutive_gateway_errors.value
        out.consecutive_gateway_failure.value = v
        out.enforcing_consecutive_gateway_failure.value = 100 if v > 0 else 0
    if od.HasField("interval"):
        out.interval.CopyFrom(od.interval)
    if od.HasField("base_ejection_time"):
        out.base_ejection_time.CopyFrom(od.base_ejection_time)
    if od.max_ejection_percent > 0:
        out.max_ejection_percent.value = od.max_ejection_percent
    if od.split_external_local_origin_errors:
        out.split_external_local_origin_errors = True
        if od.consecutive_local_origin_failures.value > 0:
            out.consecutive_local_origin_failure.value = od.consecutive_local_origin_failures.value
            out.enforcing_consecutive_local_origin_failure.value = 100
        out.enforcing_local_origin_success_rate.value = 0
    cluster.outlier_detection.CopyFrom(out)
    # Istio always sets the panic threshold with outlier detection (0 unless
    # minHealthPercent says otherwise): a service with few pods would otherwise
    # panic and send traffic to ejected hosts.
    if od.min_health_percent >= 0:
        cluster.common_lb_config.healthy_panic_threshold.value = float(od.min_health_percent)


# load balancer


def apply_load_balancer(cluster: cluster_pb2.Cluster, lb: dr_pb.LoadBalancerSettings | None) -> None:
    if lb is not None and lb.HasField("locality_lb_setting") and lb.locality_lb_setting.distribute:
        # Per-locality weights from EDS only count with locality-weighted LB.
        cluster.common_lb_config.locality_weighted_lb_config.SetInParent()
    if cluster.type == cluster_pb2.Cluster.ORIGINAL_DST:
        cluster.lb_policy = cluster_pb2.Cluster.CLUSTER_PROVIDED
        return
    simple = lb.simple if lb is not None and lb.WhichOneof("lb_policy") == "simple" else SimpleLB.UNSPECIFIED
    warmup = lb.warmup_duration_secs if lb is not None and lb.HasField("warmup_duration_secs") else None
    if simple == SimpleLB.RANDOM:
        cluster.lb_policy = cluster_pb2.Cluster.RANDOM
    elif simple == SimpleLB.ROUND_ROBIN:
        cluster.lb_policy = cluster_pb2.Cluster.ROUND_ROBIN
        if warmup is not None:
            cluster.round_robin_lb_config.slow_start_config.slow_start_window.CopyFrom(warmup)
    elif simple == SimpleLB.PASSTHROUGH:
        cluster.type = cluster_pb2.Cluster.ORIGINAL_DST
        cluster.lb_policy = cluster_pb2.Cluster.CLUSTER_PROVIDED
        cluster.ClearField("load_assignment")
        cluster.ClearField("eds_cluster_config")
        cluster.ClearField("dns_lookup_family")
        return
    else:
        # LEAST_REQUEST, deprecated LEAST_CONN, and Istio's default when unset.
        cluster.lb_policy = cluster_pb2.Cluster.LEAST_REQUEST
        if warmup is not None:
            cluster.least_request_lb_config.slow_start_config.slow_start_window.CopyFrom(warmup)
    if lb is not None and lb.WhichOneof("lb_policy") == "consistent_hash":
        _apply_hash_lb(cluster, lb.consistent_hash)


def _apply_hash_lb(cluster: cluster_pb2.Cluster, ch: dr_pb.LoadBalancerSettings.ConsistentHashLB) -> None:
    cluster.ClearField("lb_config")
    algo = ch.WhichOneof("hash_algorithm")
    if algo == "maglev":
        cluster.lb_policy = cluster_pb2.Cluster.MAGLEV
        if ch.maglev.table_size:
            cluster.maglev_lb_config.table_size.value = ch.maglev.table_size
    elif algo == "ring_hash":
        cluster.lb_policy = cluster_pb2.Cluster.RING_HASH
        if ch.ring_hash.minimum_ring_size:
            cluster.ring_hash_lb_config.minimum_ring_size.value = ch.ring_hash.minimum_ring_size
    else:
        cluster.lb_policy = cluster_pb2.Cluster.RING_HASH
        cluster.ring_hash_lb_config.minimum_ring_size.value = ch.minimum_ring_size or 1024


# --- route: hash policy ------------------------------------------------------------------


def hash_policy_of(ch: dr_pb.LoadBalancerSettings.ConsistentHashLB) -> rc.RouteAction.HashPolicy | None:
    key = ch.WhichOneof("hash_key")
    hp = rc.RouteAction.HashPolicy()
    if key == "http_header_name":
        hp.header.header_name = ch.http_header_name
    elif key == "http_cookie":
        hp.cookie.name = ch.http_cookie.name
        if ch.http_cookie.path:
            hp.cookie.path = ch.http_cookie.path
        if ch.http_cookie.HasField("ttl"):
            hp.cookie.ttl.CopyFrom(ch.http_cookie.ttl)
    elif key == "use_source_ip":
        if not ch.use_source_ip:
            return None
        hp.connection_properties.source_ip = True
    elif key == "http_query_parameter_name":
        hp.query_parameter.name = ch.http_query_parameter_name
    else:
        return None
    return hp


def _cluster_hash_policy(ctx: PushContext, cluster_name: str, proxy_ns: str) -> rc.RouteAction.HashPolicy | None:
    parsed = naming.parse_cluster(cluster_name)
    if parsed is None or parsed[0] != "outbound":
        return None
    _, port, subset, host = parsed
    lb = policy_for(ctx, host, port, subset, proxy_ns).load_balancer
    if lb is None or lb.WhichOneof("lb_policy") != "consistent_hash":
        return None
    svc = ctx.state.services.get(host)
    if svc is not None and svc.resolution == Resolution.NONE:
        return None  # ORIGINAL_DST: the cluster has no hashing load balancer
    return hash_policy_of(lb.consistent_hash)


@route_feature
def hash_policy(inp: RouteInput, route: rc.Route) -> None:
    if not route.HasField("route"):
        return
    action = route.route
    names: list[str] = []
    if action.HasField("weighted_clusters"):
        names = [w.name for w in action.weighted_clusters.clusters]
    elif action.cluster:
        names = [action.cluster]
    seen: list[rc.RouteAction.HashPolicy] = []
    for name in names:
        hp = _cluster_hash_policy(inp.ctx, name, inp.proxy_ns)
        if hp is not None and hp not in seen:
            seen.append(hp)
    # With weighted destinations Envoy hashes once per route: Istio too uses one
    # list for the route, so every destination's key takes part in the hash.
    if seen:
        del action.hash_policy[:]
        action.hash_policy.extend(seen)
