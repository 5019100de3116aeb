"""DestinationRule trafficPolicy as istiod maps it: translate a small mesh and
assert on the Envoy clusters, routes and endpoints (load balancer, consistent
hash, connection pool, outlier detection, TLS, locality failover/distribute)."""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo

from istiod_py.model import MeshState, Proxy, parse_proxy
from istiod_py.translate.generate import Translator
from istiod_py.translate.traffic import traffic_policy
from istiod_py.xds.types import TypeUrl
from tests.support.states import mesh_state

HOST = "reviews.default.svc.cluster.local"
C = cluster_pb2.Cluster
MAX = 4294967295

BASE = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}, {name: http-admin, port: 9090}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-a, namespace: default}
spec: {address: 127.9.0.1, labels: {app: reviews, version: v1}, locality: us-east/a/1}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-b, namespace: default}
spec: {address: 127.9.0.2, labels: {app: reviews, version: v2}, locality: us-east/b/1}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-c, namespace: default}
spec: {address: 127.9.0.3, labels: {app: reviews, version: v2}, locality: eu-west/c/1}
"""


def state_of(*docs: str) -> MeshState:
    return mesh_state(BASE, *docs)


def client(locality: str = "", labels: dict[str, str] | None = None) -> Proxy:
    meta: dict[str, Any] = {"NAMESPACE": "default", "LABELS": labels or {"app": "client"}}
    meta["INTERCEPTION_MODE"] = "NONE"
    if locality:
        meta["LOCALITY"] = locality
    return parse_proxy("sidecar~127.9.1.1~client.default~default.svc.cluster.local", meta)


def dr(spec: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: default}}
spec:
  host: reviews
{spec}
"""


def clusters(*docs: str) -> dict[str, cluster_pb2.Cluster]:
    out = Translator().generate(state_of(*docs), client(), TypeUrl.CLUSTER)
    result = {}
    for name, built in out.index.items():
        c = cluster_pb2.Cluster()
        c.ParseFromString(built.body)
        result[name] = c
    return result


def cluster(*docs: str, port: int = 9080, subset: str = "") -> cluster_pb2.Cluster:
    return clusters(*docs)[f"outbound|{port}|{subset}|{HOST}"]


def endpoints(*docs: str, proxy: Proxy, name: str = f"outbound|9080||{HOST}") -> endpoint_pb2.ClusterLoadAssignment:
    built = Translator().generate(state_of(*docs), proxy, TypeUrl.ENDPOINT).get(name)
    assert built is not None
    cla = endpoint_pb2.ClusterLoadAssignment()
    cla.ParseFromString(built.body)
    return cla


def priorities(cla: endpoint_pb2.ClusterLoadAssignment) -> dict[str, int]:
    out = {}
    for g in cla.endpoints:
        for e in g.lb_endpoints:
            out[e.endpoint.address.socket_address.address] = g.priority
    return out


def http_options(c: cluster_pb2.Cluster) -> hpo.HttpProtocolOptions:
    opts = hpo.HttpProtocolOptions()
    assert c.typed_extension_protocol_options[traffic_policy.H2_OPTIONS_KEY].Unpack(opts)
    return opts


# --- defaults and merging ------------------------------------------------------------------


def test_defaults_without_destination_rule() -> None:
    c = cluster()
    assert c.lb_policy == C.LEAST_REQUEST
    (t,) = c.circuit_breakers.thresholds
    assert t.max_connections.value == t.max_pending_requests.value == MAX
    assert t.max_requests.value == t.max_retries.value == MAX
    assert not t.track_remaining  # istiod 1.29+: DISABLE_TRACK_REMAINING_CB_METRICS defaults on
    assert not c.HasField("outlier_detection")
    assert not c.HasField("transport_socket")


def test_subset_overrides_top_level_and_port_level_overrides_both() -> None:
    docs = dr("""
  trafficPolicy:
    loadBalancer: {simple: RANDOM}
    connectionPool: {tcp: {maxConnections: 7}}
    portLevelSettings:
    - port: {number: 9090}
      loadBalancer: {simple: ROUND_ROBIN}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer: {simple: LEAST_REQUEST}
      portLevelSettings:
      - port: {number: 9090}
        connectionPool: {tcp: {maxConnections: 3}}
  - {name: v2, labels: {version: v2}}
""")
    cs = clusters(docs)
    assert cs[f"outbound|9080||{HOST}"].lb_policy == C.RANDOM
    assert cs[f"outbound|9090||{HOST}"].lb_policy == C.ROUND_ROBIN
    assert cs[f"outbound|9080|v2|{HOST}"].lb_policy == C.RANDOM
    assert cs[f"outbound|9090|v2|{HOST}"].lb_policy == C.ROUND_ROBIN
    v1 = cs[f"outbound|9080|v1|{HOST}"]
    assert v1.lb_policy == C.LEAST_REQUEST
    assert v1.circuit_breakers.thresholds[0].max_connections.value == 7  # inherited whole from top level
    v1_admin = cs[f"outbound|9090|v1|{HOST}"]
    assert v1_admin.lb_policy == C.LEAST_REQUEST  # subset beats the top-level port setting
    assert v1_admin.circuit_breakers.thresholds[0].max_connections.value == 3


# --- load balancer -------------------------------------------------------------------------


def test_warmup_sets_slow_start() -> None:
    c = cluster(dr("  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN, warmupDurationSecs: 30s}}"))
    assert c.lb_policy == C.ROUND_ROBIN
    assert c.round_robin_lb_config.slow_start_config.slow_start_window.seconds == 30
    c = cluster(dr("  trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST, warmupDurationSecs: 5s}}"))
    assert c.least_request_lb_config.slow_start_config.slow_start_window.seconds == 5


def test_passthrough_makes_original_dst() -> None:
    c = cluster(dr("  trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}"))
    assert c.type == C.ORIGINAL_DST and c.lb_policy == C.CLUSTER_PROVIDED
    assert not c.HasField("eds_cluster_config") and not c.HasField("load_assignment")


def test_consistent_hash_cluster_and_route() -> None:
    docs = dr("  trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}")
    c = cluster(docs)
    assert c.lb_policy == C.RING_HASH and c.ring_hash_lb_config.minimum_ring_size.value == 1024
    (r,) = routes(docs)
    (hp,) = r.route.hash_policy
    assert hp.header.header_name == "x-user"


def test_consistent_hash_variants() -> None:
    ch = "consistentHash: {useSourceIp: true, maglev: {tableSize: 65537}}"
    c = cluster(dr(f"  trafficPolicy: {{loadBalancer: {{{ch}}}}}"))
    assert c.lb_policy == C.MAGLEV and c.maglev_lb_config.table_size.value == 65537
    ch = "consistentHash: {httpQueryParameterName: u, ringHash: {minimumRingSize: 64}}"
    c = cluster(dr(f"  trafficPolicy: {{loadBalancer: {{{ch}}}}}"))
    assert c.lb_policy == C.RING_HASH and c.ring_hash_lb_config.minimum_ring_size.value == 64
    docs = dr("""
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpCookie: {name: session, path: /, ttl: 60s}}
""")
    (r,) = routes(docs)
    (hp,) = r.route.hash_policy
    assert hp.cookie.name == "session" and hp.cookie.path == "/" and hp.cookie.ttl.seconds == 60
    (r,) = routes(dr("  trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true}}}"))
    assert r.route.hash_policy[0].connection_properties.source_ip


def test_hash_policy_follows_subset_of_weighted_route() -> None:
    docs = dr("""
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-v1}}}
  - {name: v2, labels: {version: v2}}
""")
    vs = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 50}
    - {destination: {host: reviews, subset: v2}, weight: 50}
"""
    (r,) = routes(docs, vs)
    assert [h.header.header_name for h in r.route.hash_policy] == ["x-v1"]
    assert cluster(docs, vs, subset="v1").lb_policy == C.RING_HASH
    assert cluster(docs, vs, subset="v2").lb_policy == C.LEAST_REQUEST


def routes(*docs: str) -> list[rc.Route]:
    built = Translator().generate(state_of(*docs), client(), TypeUrl.ROUTE).get("9080")
    assert built is not None
    msg = route_pb2.RouteConfiguration()
    msg.ParseFromString(built.body)
    for vh in msg.virtual_hosts:
        if vh.name == f"{HOST}:9080":
            return list(vh.routes)
    raise AssertionError("no vhost")


# --- connection pool ---------------------------------------------------------------------


def test_connection_pool_maps_to_thresholds_and_http_options() -> None:
    c = cluster(
        dr("""
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 10
        connectTimeout: 250ms
        maxConnectionDuration: 1h
        tcpKeepalive: {probes: 3, time: 7200s, interval: 75s}
      http:
        http1MaxPendingRequests: 5
        http2MaxRequests: 20
        maxRequestsPerConnection: 4
        maxRetries: 2
        idleTimeout: 30s
""")
    )
    (t,) = c.circuit_breakers.thresholds
    assert (t.max_connections.value, t.max_pending_requests.value) == (10, 5)
    assert (t.max_requests.value, t.max_retries.value) == (20, 2)
    assert c.connect_timeout.ToMilliseconds() == 250
    ka = c.upstream_connection_options.tcp_keepalive
    assert (ka.keepalive_probes.value, ka.keepalive_time.value, ka.keepalive_interval.value) == (3, 7200, 75)
    common = http_options(c).common_http_protocol_options
    assert common.idle_timeout.seconds == 30
    assert common.max_requests_per_connection.value == 4
    assert common.max_connection_duration.seconds == 3600


def test_h2_upgrade_and_client_protocol() -> None:
    c = cluster(dr("  trafficPolicy: {connectionPool: {http: {h2UpgradePolicy: UPGRADE, maxConcurrentStreams: 9}}}"))
    opts = http_options(c)
    assert opts.explicit_http_config.http2_protocol_options.max_concurrent_streams.value == 9
    c = cluster(dr("  trafficPolicy: {connectionPool: {http: {useClientProtocol: true}}}"))
    assert http_options(c).HasField("use_downstream_protocol_config")


# --- outlier detection -------------------------------------------------------------------


def test_outlier_detection() -> None:
    c = cluster(
        dr("""
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 3
      consecutiveGatewayErrors: 2
      splitExternalLocalOriginErrors: true
      consecutiveLocalOriginFailures: 4
      interval: 5s
      baseEjectionTime: 1m
      maxEjectionPercent: 50
      minHealthPercent: 20
""")
    )
    od = c.outlier_detection
    assert (od.consecutive_5xx.value, od.enforcing_consecutive_5xx.value) == (3, 100)
    assert (od.consecutive_gateway_failure.value, od.enforcing_consecutive_gateway_failure.value) == (2, 100)
    assert od.split_external_local_origin_errors
    assert od.consecutive_local_origin_failure.value == 4
    assert od.HasField("enforcing_success_rate") and od.enforcing_success_rate.value == 0
    assert (od.interval.seconds, od.base_ejection_time.seconds, od.max_ejection_percent.value) == (5, 60, 50)
    assert c.common_lb_config.healthy_panic_threshold.value == 20


def test_outlier_detection_disables_panic_by_default() -> None:
    c = cluster(dr("  trafficPolicy: {outlierDetection: {consecutive5xxErrors: 1}}"))
    assert c.common_lb_config.HasField("healthy_panic_threshold")
    assert c.common_lb_config.healthy_panic_threshold.value == 0


# --- TLS ---------------------------------------------------------------------------------


def _tls(c: cluster_pb2.Cluster) -> tls_pb2.UpstreamTlsContext:
    assert c.transport_socket.name == "envoy.transport_sockets.tls"
    ctx = tls_pb2.UpstreamTlsContext()
    assert c.transport_socket.typed_config.Unpack(ctx)
    return ctx


def test_tls_simple_and_mutual() -> None:
    c = cluster(
        dr("""
  trafficPolicy:
    tls: {mode: SIMPLE, caCertificates: /etc/ca.pem, sni: r.example, subjectAltNames: [r.example]}
""")
    )
    ctx = _tls(c)
    assert ctx.sni == "r.example"
    vc = ctx.common_tls_context.validation_context
    assert vc.trusted_ca.filename == "/etc/ca.pem"
    assert [m.matcher.exact for m in vc.match_typed_subject_alt_names] == ["r.example"]
    c = cluster(
        dr("""
  trafficPolicy:
    tls: {mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem, sni: x}
""")
    )
    (cert,) = _tls(c).common_tls_context.tls_certificates
    assert (cert.certificate_chain.filename, cert.private_key.filename) == ("/c.pem", "/k.pem")


def test_tls_simple_without_sni_uses_auto_sni_and_insecure_skips_verify() -> None:
    c = cluster(dr("  trafficPolicy: {tls: {mode: SIMPLE, insecureSkipVerify: true}}"))
    ctx = _tls(c)
    assert not ctx.common_tls_context.HasField("validation_context")
    up = http_options(c).upstream_http_protocol_options
    assert up.auto_sni and not up.auto_san_validation


def test_tls_disable_has_no_transport_socket() -> None:
    c = cluster(dr("  trafficPolicy: {tls: {mode: DISABLE}}"))
    assert not c.HasField("transport_socket") and not c.transport_socket_matches


# --- locality ----------------------------------------------------------------------------

OUTLIER = "    outlierDetection: {consecutive5xxErrors: 1}\n"


def test_locality_failover_priorities_relative_to_the_proxy() -> None:
    docs = dr("  trafficPolicy:\n" + OUTLIER)
    cla = endpoints(docs, proxy=client("us-east/a/1"))
    assert priorities(cla) == {"127.9.0.1": 0, "127.9.0.2": 1, "127.9.0.3": 2}
    cla = endpoints(docs, proxy=client("eu-west/c/1"))
    assert priorities(cla) == {"127.9.0.3": 0, "127.9.0.1": 1, "127.9.0.2": 1}


def test_no_priorities_without_outlier_detection_or_locality() -> None:
    assert set(priorities(endpoints(proxy=client("us-east/a/1"))).values()) == {0}
    assert set(priorities(endpoints(dr("  trafficPolicy:\n" + OUTLIER), proxy=client())).values()) == {0}
    disabled = dr("  trafficPolicy:\n" + OUTLIER + "    loadBalancer: {localityLbSetting: {enabled: false}}\n")
    assert set(priorities(endpoints(disabled, proxy=client("us-east/a/1"))).values()) == {0}


def test_explicit_failover_region() -> None:
    docs = dr(
        "  trafficPolicy:\n"
        + OUTLIER
        + "    loadBalancer:\n      localityLbSetting:\n        failover: [{from: eu-west, to: us-east}]\n"
    )
    cla = endpoints(docs, proxy=client("eu-west/c/1"))
    assert priorities(cla) == {"127.9.0.3": 0, "127.9.0.1": 1, "127.9.0.2": 1}


def test_failover_priority_by_labels() -> None:
    docs = dr(
        "  trafficPolicy:\n"
        + OUTLIER
        + "    loadBalancer:\n      localityLbSetting:\n        failoverPriority: [version]\n"
    )
    cla = endpoints(docs, proxy=client("us-east/a/1", {"app": "client", "version": "v2"}))
    assert priorities(cla) == {"127.9.0.2": 0, "127.9.0.3": 0, "127.9.0.1": 1}


def test_distribute_weights() -> None:
    docs = dr("""
  trafficPolicy:
    loadBalancer:
      localityLbSetting:
        distribute:
        - from: us-east/a/*
          to: {"us-east/b/*": 80, "eu-west/*": 20}
""")
    cla = endpoints(docs, proxy=client("us-east/a/1"))
    weights = {
        e.endpoint.address.socket_address.address: g.load_balancing_weight.value
        for g in cla.endpoints
        for e in g.lb_endpoints
    }
    assert weights == {"127.9.0.2": 80, "127.9.0.3": 20}
    assert cluster(docs).common_lb_config.HasField("locality_weighted_lb_config")


def test_eds_shared_between_proxies_without_locality_rules() -> None:
    t = Translator()
    state = state_of()
    a = t.generate(state, client("us-east/a/1"), TypeUrl.ENDPOINT).get(f"outbound|9080||{HOST}")
    b = t.generate(state, client("eu-west/c/1"), TypeUrl.ENDPOINT).get(f"outbound|9080||{HOST}")
    assert a is b
