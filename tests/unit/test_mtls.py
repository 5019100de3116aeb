"""Mutual TLS as istiod builds it: PeerAuthentication precedence and port-level
modes, inbound filter chains per mode, and the client side (DestinationRule
ISTIO_MUTUAL, auto mTLS) on outbound clusters; SDS only for proxies that have it."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from istiod_py.agent.bootstrap import SDS_METADATA_KEY, BootstrapOptions, build_bootstrap
from istiod_py.model import MeshConfig, MeshState, Proxy, parse_proxy
from istiod_py.translate.context import PushContext
from istiod_py.translate.generate import Translator
from istiod_py.translate.security import mtls
from istiod_py.translate.security.peer_authentication import MTLSMode, workload_policy
from istiod_py.xds.types import TypeUrl
from tests.support.states import mesh_state

HOST = "reviews.default.svc.cluster.local"
SERVER_IP = "127.9.0.1"

BASE = f"""
apiVersion: v1
kind: Service
metadata: {{name: reviews, namespace: default}}
spec:
  selector: {{app: reviews}}
  ports: [{{name: http, port: 9080}}, {{name: tcp-db, port: 3306}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: reviews-a, namespace: default}}
spec:
  address: {SERVER_IP}
  serviceAccount: bookinfo-reviews
  labels: {{app: reviews, version: v1, security.istio.io/tlsMode: istio}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: reviews-legacy, namespace: default}}
spec: {{address: 127.9.0.2, labels: {{app: reviews, version: v0}}}}
"""


def pa(name: str, ns: str, mode: str = "", selector: dict[str, str] | None = None, ports: str = "") -> str:
    spec: list[str] = []
    if selector:
        spec.append(f"  selector: {{matchLabels: {selector}}}".replace("'", ""))
    if mode:
        spec.append(f"  mtls: {{mode: {mode}}}")
    if ports:
        spec.append(f"  portLevelMtls: {ports}")
    body = "\n".join(spec) or "  {}"
    return f"""
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: {name}, namespace: {ns}}}
spec:
{body}
"""


def state_of(*docs: str, mesh: MeshConfig | None = None) -> MeshState:
    return mesh_state(BASE, *docs, mesh=mesh)


def proxy(
    ip: str = SERVER_IP,
    labels: dict[str, str] | None = None,
    ns: str = "default",
    sds: bool = True,
    name: str = "reviews-a",
) -> Proxy:
    meta: dict[str, Any] = {
        "NAMESPACE": ns,
        "LABELS": labels if labels is not None else {"app": "reviews", "version": "v1"},
        "INTERCEPTION_MODE": "NONE",
    }
    if sds:
        meta[SDS_METADATA_KEY] = "true"
    return parse_proxy(f"sidecar~{ip}~{name}.{ns}~{ns}.svc.cluster.local", meta)


def mode(*docs: str, labels: dict[str, str] | None = None, ns: str = "default", port: int = 9080) -> MTLSMode:
    ctx = PushContext(state_of(*docs))
    return workload_policy(ctx, ns, labels or {"app": "reviews"}).for_port(port)


# --- PeerAuthentication resolution ------------------------------------------------------------


def test_default_is_permissive() -> None:
    assert mode() == MTLSMode.PERMISSIVE


@pytest.mark.parametrize(
    ("docs", "expected"),
    [
        ([pa("mesh", "istio-system", "STRICT")], MTLSMode.STRICT),
        ([pa("mesh", "istio-system", "STRICT"), pa("ns", "default", "DISABLE")], MTLSMode.DISABLE),
        (
            [pa("mesh", "istio-system", "STRICT"), pa("ns", "default", "DISABLE"),
             pa("wl", "default", "PERMISSIVE", {"app": "reviews"})],
            MTLSMode.PERMISSIVE,
        ),
        # UNSET inherits, level by level.
        ([pa("mesh", "istio-system", "STRICT"), pa("ns", "default", "UNSET")], MTLSMode.STRICT),
        ([pa("mesh", "istio-system", "DISABLE"), pa("wl", "default", "", {"app": "reviews"})], MTLSMode.DISABLE),
        # A selector that does not match, or another namespace, changes nothing.
        ([pa("ns", "default", "STRICT"), pa("wl", "default", "DISABLE", {"app": "other"})], MTLSMode.STRICT),
        ([pa("other", "prod", "STRICT")], MTLSMode.PERMISSIVE),
        # A selector policy in the root namespace is not mesh-wide.
        ([pa("wl", "istio-system", "STRICT", {"app": "reviews"})], MTLSMode.PERMISSIVE),
    ],
)  # fmt: skip
def test_precedence_workload_namespace_mesh(docs: list[str], expected: MTLSMode) -> None:
    assert mode(*docs) == expected


def test_port_level_overrides_and_inherits() -> None:
    docs = (
        pa("ns", "default", "STRICT"),
        pa("wl", "default", "", {"app": "reviews"}, ports="{9080: {mode: DISABLE}, 3306: {mode: UNSET}}"),
    )
    assert mode(*docs, port=9080) == MTLSMode.DISABLE
    assert mode(*docs, port=3306) == MTLSMode.STRICT  # UNSET port entry: the workload's (inherited) mode
    assert mode(*docs, port=8000) == MTLSMode.STRICT


def test_oldest_namespace_policy_wins_deterministically() -> None:
    assert mode(pa("a", "default", "DISABLE"), pa("b", "default", "STRICT")) == MTLSMode.DISABLE


# --- inbound listeners ----------------------------------------------------------------------------


def listeners(state: MeshState, p: Proxy) -> dict[str, listener_pb2.Listener]:
    out = {}
    for name, built in Translator().generate(state, p, TypeUrl.LISTENER).index.items():
        lst = listener_pb2.Listener()
        lst.ParseFromString(built.body)
        out[name] = lst
    return out


def inbound(*docs: str, sds: bool = True, port: int = 9080) -> listener_pb2.Listener:
    return listeners(state_of(*docs), proxy(sds=sds))[f"{SERVER_IP}_{port}"]


def tls_chain_context(lst: listener_pb2.Listener) -> tls_pb2.DownstreamTlsContext:
    chain = next(c for c in lst.filter_chains if c.filter_chain_match.transport_protocol == "tls")
    assert chain.transport_socket.name == "envoy.transport_sockets.tls"
    ctx = tls_pb2.DownstreamTlsContext()
    assert chain.transport_socket.typed_config.Unpack(ctx)
    return ctx


def test_permissive_inbound_has_mtls_and_plaintext_chains() -> None:
    lst = inbound()
    assert [f.name for f in lst.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    assert len(lst.filter_chains) == 2
    secure, plain = lst.filter_chains
    assert secure.filter_chain_match.transport_protocol == "tls"
    assert list(secure.filter_chain_match.application_protocols) == [
        "istio-peer-exchange", "istio", "istio-http/1.0", "istio-http/1.1", "istio-h2",
    ]  # fmt: skip
    assert not plain.HasField("filter_chain_match") and not plain.HasField("transport_socket")
    ctx = tls_chain_context(lst)
    assert ctx.require_client_certificate.value
    common = ctx.common_tls_context
    assert [s.name for s in common.tls_certificate_sds_secret_configs] == ["default"]
    assert common.combined_validation_context.validation_context_sds_secret_config.name == "ROOTCA"
    sds = common.tls_certificate_sds_secret_configs[0].sds_config.api_config_source
    assert sds.grpc_services[0].envoy_grpc.cluster_name == "sds-grpc"
    assert list(common.alpn_protocols) == ["h2", "http/1.1"]
    # The app learns the peer's identity (X-Forwarded-Client-Cert), on both chains.
    for chain in lst.filter_chains:
        m = hcm.HttpConnectionManager()
        assert chain.filters[-1].typed_config.Unpack(m)
        assert m.forward_client_cert_details == hcm.HttpConnectionManager.APPEND_FORWARD
        assert m.set_current_client_cert_details.uri


def test_strict_inbound_has_only_the_mtls_chain() -> None:
    lst = inbound(pa("mesh", "istio-system", "STRICT"))
    assert len(lst.filter_chains) == 1
    assert lst.filter_chains[0].filter_chain_match.transport_protocol == "tls"


def test_disable_inbound_is_plaintext_only() -> None:
    lst = inbound(pa("ns", "default", "DISABLE"))
    assert len(lst.filter_chains) == 1 and not lst.listener_filters
    assert not lst.filter_chains[0].HasField("transport_socket")


def test_tcp_port_level_strict() -> None:
    sidecar = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews, namespace: default}
spec:
  workloadSelector: {labels: {app: reviews}}
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:8080
  - port: {number: 3306, protocol: TCP, name: tcp}
    defaultEndpoint: 127.0.0.1:3306
"""
    docs = (sidecar, pa("wl", "default", "", {"app": "reviews"}, ports="{3306: {mode: STRICT}}"))
    assert len(inbound(*docs, port=9080).filter_chains) == 2
    tcp = inbound(*docs, port=3306)
    assert len(tcp.filter_chains) == 1
    assert tcp.filter_chains[0].filters[-1].name == "envoy.filters.network.tcp_proxy"
    assert "istio-peer-exchange" in tls_chain_context(tcp).common_tls_context.alpn_protocols


def test_proxy_without_sds_gets_plaintext_inbound_even_when_strict() -> None:
    lst = inbound(pa("mesh", "istio-system", "STRICT"), sds=False)
    assert len(lst.filter_chains) == 1 and not lst.filter_chains[0].HasField("transport_socket")


def test_inbound_cache_distinguishes_modes_in_one_state() -> None:
    state = state_of(pa("wl", "default", "STRICT", {"version": "v1"}))
    t = Translator()
    strict = t.generate(state, proxy(labels={"app": "reviews", "version": "v1"}), TypeUrl.LISTENER)
    permissive = t.generate(state, proxy(labels={"app": "reviews", "version": "v2"}), TypeUrl.LISTENER)
    assert strict.get(f"{SERVER_IP}_9080") != permissive.get(f"{SERVER_IP}_9080")


# --- outbound clusters ----------------------------------------------------------------------------


def clusters(*docs: str, sds: bool = True, mesh: MeshConfig | None = None) -> dict[str, cluster_pb2.Cluster]:
    client = proxy("127.9.1.1", {"app": "client"}, sds=sds, name="client")
    out = {}
    for name, built in Translator().generate(state_of(*docs, mesh=mesh), client, TypeUrl.CLUSTER).index.items():
        c = cluster_pb2.Cluster()
        c.ParseFromString(built.body)
        out[name] = c
    return out


def upstream_ctx(sock: Any) -> tls_pb2.UpstreamTlsContext:
    assert sock.name == "envoy.transport_sockets.tls"
    ctx = tls_pb2.UpstreamTlsContext()
    assert sock.typed_config.Unpack(ctx)
    return ctx


def sans(ctx: tls_pb2.UpstreamTlsContext) -> list[str]:
    vc = ctx.common_tls_context.combined_validation_context.default_validation_context
    return [m.matcher.exact for m in vc.match_typed_subject_alt_names]


def test_auto_mtls_transport_socket_matches() -> None:
    c = clusters()[f"outbound|9080||{HOST}"]
    assert not c.HasField("transport_socket")
    assert [m.name for m in c.transport_socket_matches] == ["tlsMode-istio", "tlsMode-disabled"]
    istio, plain = c.transport_socket_matches
    assert dict(istio.match) == {"tlsMode": "istio"} and not plain.match.fields
    assert plain.transport_socket.name == "envoy.transport_sockets.raw_buffer"
    ctx = upstream_ctx(istio.transport_socket)
    assert ctx.sni == f"outbound_.9080_._.{HOST}"
    assert list(ctx.common_tls_context.alpn_protocols) == ["istio-peer-exchange", "istio"]
    assert sans(ctx) == ["spiffe://cluster.local/ns/default/sa/bookinfo-reviews"]
    assert [s.name for s in ctx.common_tls_context.tls_certificate_sds_secret_configs] == ["default"]
    vc = ctx.common_tls_context.combined_validation_context
    assert vc.validation_context_sds_secret_config.name == "ROOTCA"


def test_endpoints_carry_the_tls_mode_the_matches_use() -> None:
    from envoy.config.endpoint.v3 import endpoint_pb2

    built = Translator().generate(state_of(), proxy("127.9.1.1", {"app": "client"}), TypeUrl.ENDPOINT)
    b = built.get(f"outbound|9080||{HOST}")
    assert b is not None
    cla = endpoint_pb2.ClusterLoadAssignment()
    cla.ParseFromString(b.body)
    modes = {
        e.endpoint.address.socket_address.address: dict(e.metadata.filter_metadata["envoy.transport_socket_match"])
        for g in cla.endpoints
        for e in g.lb_endpoints
    }
    assert modes == {SERVER_IP: {"tlsMode": "istio"}, "127.9.0.2": {}}


def test_auto_mtls_off_by_mesh_config_or_disable_peer_authentication() -> None:
    off = clusters(mesh=MeshConfig(enable_auto_mtls=False))[f"outbound|9080||{HOST}"]
    assert not off.transport_socket_matches and not off.HasField("transport_socket")
    disabled = clusters(pa("ns", "default", "DISABLE"))[f"outbound|9080||{HOST}"]
    assert not disabled.transport_socket_matches
    # The workload policy of the service's pods, port-level, counts too.
    per_port = clusters(pa("wl", "default", "", {"app": "reviews"}, ports="{9080: {mode: DISABLE}}"))
    assert not per_port[f"outbound|9080||{HOST}"].transport_socket_matches
    assert per_port[f"outbound|3306||{HOST}"].transport_socket_matches


DR_ISTIO_MUTUAL = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy: {tls: {mode: ISTIO_MUTUAL, sni: custom.sni, subjectAltNames: ["spiffe://td/x"]}}
  - name: plain
    labels: {version: v1}
    trafficPolicy: {tls: {mode: DISABLE}}
"""


def test_destination_rule_istio_mutual() -> None:
    cs = clusters(DR_ISTIO_MUTUAL)
    top = cs[f"outbound|9080||{HOST}"]
    assert not top.transport_socket_matches
    ctx = upstream_ctx(top.transport_socket)
    assert ctx.sni == f"outbound_.9080_._.{HOST}"
    assert sans(ctx) == ["spiffe://cluster.local/ns/default/sa/bookinfo-reviews"]
    v1 = upstream_ctx(cs[f"outbound|9080|v1|{HOST}"].transport_socket)
    assert v1.sni == "custom.sni" and sans(v1) == ["spiffe://td/x"]
    plain = cs[f"outbound|9080|plain|{HOST}"]
    assert not plain.HasField("transport_socket") and not plain.transport_socket_matches


def test_proxy_without_sds_gets_no_sds_tls_in_clusters() -> None:
    for c in clusters(DR_ISTIO_MUTUAL, sds=False).values():
        assert not c.transport_socket_matches, c.name
        assert not c.HasField("transport_socket"), c.name


def test_bootstrap_announces_sds_only_with_a_socket() -> None:
    with_sds = build_bootstrap(BootstrapOptions(sds_socket="/tmp/sds.sock"))
    without = build_bootstrap(BootstrapOptions())
    assert with_sds["node"]["metadata"][SDS_METADATA_KEY] == "true"
    assert SDS_METADATA_KEY not in without["node"]["metadata"]
    assert mtls.SDS_METADATA_KEY == SDS_METADATA_KEY
