"""Mutual TLS between sidecars with SDS workload certificates, as istiod builds it.

Server side (inbound listeners, see `listeners.inbound_listener`): the mode from
PeerAuthentication (peer_authentication.py) picks the filter chains:

- STRICT: only a chain matching `transport_protocol: tls` with Istio's ALPN
  values, terminating mTLS (client certificate required, SDS `default`,
  validated by SDS `ROOTCA`, SPIFFE URI in the mesh trust domain or an alias). Plaintext matches no chain and is closed.
- PERMISSIVE: that chain plus a plaintext chain matching everything else.
- DISABLE: the plaintext chain only.

Client side (outbound clusters): a DestinationRule `tls.mode: ISTIO_MUTUAL`
gets the mesh's UpstreamTlsContext; with no DestinationRule TLS and auto mTLS
on (MeshConfig `enableAutoMtls`, default true) the cluster gets
`transport_socket_matches`: endpoints whose EDS metadata says
`envoy.transport_socket_match: {tlsMode: istio}` (pods labelled
`security.istio.io/tlsMode: istio`; WorkloadEntries with that label or, without
the label, with a serviceAccount) are dialled with mTLS, all others in
plaintext. A destination whose PeerAuthentication resolves to DISABLE, and a
MESH_EXTERNAL service, get no auto mTLS (as istiod). Other DestinationRule TLS
modes are traffic/traffic_policy.py's.

SDS references point at the bootstrap cluster `sds-grpc`, which only a proxy
started by `istiod-py agent` has. A proxy announces it with node metadata
`SDS: "true"` (the bootstrap adds it whenever it has an SDS socket); a proxy
without it (plain `istiod-py bootstrap`) gets no SDS-based TLS at all: its
outbound clusters are plaintext and its inbound listeners accept plaintext only
(as if DISABLE), because Envoy would reject the whole update otherwise.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2, grpc_service_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from google.protobuf import duration_pb2
from istio.networking.v1alpha3 import destination_rule_pb2 as dr_pb

from istiod_py.model import Proxy, Service
from istiod_py.model.service import Port

from ..context import PushContext
from ..features import cluster_feature
from ..traffic.traffic_policy import policy_for
from . import peer_authentication as pa

SDS_CLUSTER = "sds-grpc"
WORKLOAD_SECRET = "default"
ROOT_SECRET = "ROOTCA"
# Node metadata a proxy sets when its bootstrap has the `sds-grpc` cluster.
SDS_METADATA_KEY = "SDS"  # same as istiod_py.agent.bootstrap.SDS_METADATA_KEY

TLS_SOCKET = "envoy.transport_sockets.tls"
RAW_SOCKET = "envoy.transport_sockets.raw_buffer"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
TRANSPORT_SOCKET_MATCH = "envoy.transport_socket_match"

# Istio's ALPN values: the client offers these; the server's mTLS chain matches them.
ALPN_IN_MESH = ("istio-peer-exchange", "istio")
ALPN_IN_MESH_H2 = ("istio-peer-exchange", "istio", "h2")
INBOUND_MTLS_ALPN_MATCH = ("istio-peer-exchange", "istio", "istio-http/1.0", "istio-http/1.1", "istio-h2")
INBOUND_HTTP_ALPN = ("h2", "http/1.1")
INBOUND_TCP_ALPN = ("istio-peer-exchange", "h2", "http/1.1")
# istiod's inbound mTLS ciphers (TLS 1.2; TLS 1.3 suites are not configurable):
# AEAD only, ECDHE first.
INBOUND_CIPHER_SUITES = (
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-GCM-SHA256",
)

Mode = dr_pb.ClientTLSSettings.TLSmode
MTLSMode = pa.MTLSMode


# --- proxy capability --------------------------------------------------------------------


def sds_capable(proxy: Proxy) -> bool:
    """True when the proxy's bootstrap has the `sds-grpc` cluster (it said so)."""
    value = proxy.metadata.get(SDS_METADATA_KEY)
    return value is True or str(value).lower() == "true"


# --- shared TLS pieces ---------------------------------------------------------------------


def sds_config() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        api_config_source=config_source_pb2.ApiConfigSource(
            api_type=config_source_pb2.ApiConfigSource.GRPC,
            transport_api_version=config_source_pb2.V3,
            set_node_on_first_message_only=True,
            grpc_services=[
                grpc_service_pb2.GrpcService(
                    envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=SDS_CLUSTER)
                )
            ],
        ),
        initial_fetch_timeout=duration_pb2.Duration(seconds=0),
        resource_api_version=config_source_pb2.V3,
    )


def _tls_params() -> common_pb2.TlsParameters:
    return common_pb2.TlsParameters(
        tls_minimum_protocol_version=common_pb2.TlsParameters.TLSv1_2,
        tls_maximum_protocol_version=common_pb2.TlsParameters.TLSv1_3,
    )


@functools.lru_cache(maxsize=16)
def _common_prototype(alpn: tuple[str, ...]) -> tls_pb2.CommonTlsContext:
    """The mesh CommonTlsContext without SANs: the same for every cluster with
    these ALPN values, so it is built once and copied (never mutated)."""
    common = tls_pb2.CommonTlsContext(tls_params=_tls_params(), alpn_protocols=list(alpn))
    common.tls_certificate_sds_secret_configs.add(name=WORKLOAD_SECRET, sds_config=sds_config())
    combined = common.combined_validation_context
    combined.default_validation_context.SetInParent()
    combined.validation_context_sds_secret_config.name = ROOT_SECRET
    combined.validation_context_sds_secret_config.sds_config.CopyFrom(sds_config())
    return common


def mesh_common_tls_context(alpn: Sequence[str], sans: Sequence[str] = ()) -> tls_pb2.CommonTlsContext:
    common = tls_pb2.CommonTlsContext()
    common.CopyFrom(_common_prototype(tuple(alpn)))
    if sans:
        matchers = common.combined_validation_context.default_validation_context.match_typed_subject_alt_names
        for san in sans:
            m = matchers.add()
            m.san_type = common_pb2.SubjectAltNameMatcher.URI
            m.matcher.exact = san
    return common


# --- client side ---------------------------------------------------------------------------


def sni(port: int, subset: str, host: str) -> str:
    """Istio's SNI for in-mesh TLS: the cluster name in DNS SRV form."""
    return f"outbound_.{port}_.{subset}_.{host}"


def spiffe(trust_domain: str, namespace: str, service_account: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


def service_accounts(ctx: PushContext, svc: Service, port: Port) -> tuple[str, ...]:
    """SPIFFE identities the destination may present: its endpoints' service
    accounts and the service's own subjectAltNames (istiod's ServiceAccounts)."""

    def build() -> tuple[str, ...]:
        out = set(svc.subject_alt_names)
        for ep in ctx.state.endpoints_for(svc.hostname, port.number):
            if ep.service_account:
                if ep.service_account.startswith("spiffe://"):
                    out.add(ep.service_account)
                else:
                    out.add(spiffe(ctx.domain, ep.namespace or svc.namespace, ep.service_account))
        # istiod's ExpandWithTrustDomains: a peer may present its identity in any
        # trust domain the mesh treats as its own (trustDomainAliases).
        prefix = f"spiffe://{ctx.domain}/"
        for uri in list(out):
            if uri.startswith(prefix):
                out.update(f"spiffe://{alias}/{uri[len(prefix):]}" for alias in ctx.state.mesh.trust_domain_aliases)
        return tuple(sorted(out))

    return ctx.cached(("mtls-sans", svc.hostname, port.number), build)


def istio_mutual_context(alpn: Sequence[str], sans: Sequence[str], server_name: str) -> tls_pb2.UpstreamTlsContext:
    return tls_pb2.UpstreamTlsContext(common_tls_context=mesh_common_tls_context(alpn, sans), sni=server_name)


def _tls_socket(context: Any) -> base_pb2.TransportSocket:
    sock = base_pb2.TransportSocket(name=TLS_SOCKET)
    sock.typed_config.Pack(context)
    return sock


def _raw_socket() -> base_pb2.TransportSocket:
    sock = base_pb2.TransportSocket(name=RAW_SOCKET)
    sock.typed_config.Pack(raw_buffer_pb2.RawBuffer())
    return sock


@functools.cache
def _disabled_match() -> cluster_pb2.Cluster.TransportSocketMatch:
    """Auto mTLS's plaintext fallback, the same for every cluster: appended as a copy."""
    return cluster_pb2.Cluster.TransportSocketMatch(name="tlsMode-disabled", transport_socket=_raw_socket())


def _client_alpn(port: Port) -> tuple[str, ...]:
    return ALPN_IN_MESH_H2 if port.protocol.is_http2 else ALPN_IN_MESH


def auto_mtls_applies(ctx: PushContext, svc: Service, port: Port) -> bool:
    """istiod's best-effort inference of the server side: no auto mTLS to a mesh
    external service or to workloads whose PeerAuthentication says DISABLE."""
    if not ctx.state.mesh.enable_auto_mtls or svc.mesh_external:
        return False
    policy = pa.service_policy(ctx, svc)
    if not policy.ports:
        return policy.mode != MTLSMode.DISABLE  # every port has the policy's mode
    ports = {port.target_port or port.number}
    ports.update(ep.port for ep in ctx.state.endpoints_for(svc.hostname, port.number))
    return not all(policy.for_port(p) == MTLSMode.DISABLE for p in ports)


@cluster_feature
def mesh_mtls(
    ctx: PushContext, cluster: cluster_pb2.Cluster, svc: Service, port: Port, subset: str, viewer_ns: str
) -> None:
    tls = policy_for(ctx, svc.hostname, port.number, subset, viewer_ns).tls
    if tls is not None:
        if tls.mode == Mode.ISTIO_MUTUAL:
            sans = list(tls.subject_alt_names) or service_accounts(ctx, svc, port)
            context = istio_mutual_context(_client_alpn(port), sans, tls.sni or sni(port.number, subset, svc.hostname))
            cluster.ClearField("transport_socket_matches")
            cluster.transport_socket.CopyFrom(_tls_socket(context))
        return  # any other DestinationRule mode is traffic/traffic_policy.py's
    if not auto_mtls_applies(ctx, svc, port):
        return
    context = istio_mutual_context(
        _client_alpn(port), service_accounts(ctx, svc, port), sni(port.number, subset, svc.hostname)
    )
    cluster.ClearField("transport_socket")
    del cluster.transport_socket_matches[:]
    mtls = cluster.transport_socket_matches.add(name="tlsMode-istio", transport_socket=_tls_socket(context))
    mtls.match.fields["tlsMode"].string_value = "istio"  # as match.update({"tlsMode": "istio"})
    cluster.transport_socket_matches.append(_disabled_match())


def _uses_sds(sock: base_pb2.TransportSocket) -> bool:
    if sock.name != TLS_SOCKET or not sock.HasField("typed_config"):
        return False
    ctx = tls_pb2.UpstreamTlsContext()
    if not sock.typed_config.Unpack(ctx):
        return False
    common = ctx.common_tls_context
    configs = list(common.tls_certificate_sds_secret_configs)
    if common.HasField("combined_validation_context"):
        configs.append(common.combined_validation_context.validation_context_sds_secret_config)
    if common.HasField("validation_context_sds_secret_config"):
        configs.append(common.validation_context_sds_secret_config)
    return any(
        c.sds_config.HasField("api_config_source")
        and any(g.envoy_grpc.cluster_name == SDS_CLUSTER for g in c.sds_config.api_config_source.grpc_services)
        for c in configs
    )


def strip_workload_tls(cluster: cluster_pb2.Cluster) -> None:
    """For a proxy without the `sds-grpc` cluster: drop every transport socket that
    needs workload certificates (it would make Envoy reject the whole CDS update).
    The cluster falls back to plaintext."""
    if cluster.HasField("transport_socket") and _uses_sds(cluster.transport_socket):
        cluster.ClearField("transport_socket")
    if any(_uses_sds(m.transport_socket) for m in cluster.transport_socket_matches):
        del cluster.transport_socket_matches[:]


# --- server side ---------------------------------------------------------------------------


def inbound_mode(ctx: PushContext, proxy: Proxy, port: int) -> MTLSMode:
    """The server-side mode of one inbound port of `proxy` (never UNSET). Without
    workload certificates, DISABLE: the proxy cannot terminate mTLS."""
    if not sds_capable(proxy):
        return MTLSMode.DISABLE
    return pa.workload_policy(ctx, proxy.namespace, proxy.labels).for_port(port)


def inbound_key(ctx: PushContext, proxy: Proxy, ports: Iterable[int]) -> tuple[object, ...]:
    """What inbound listeners depend on here, for the listener cache key."""
    return tuple(inbound_mode(ctx, proxy, p).value for p in ports)


def validation_trust_domains(ctx: PushContext) -> tuple[str, ...]:
    """istiod's TrustDomainsForValidation: the mesh trust domain and its aliases,
    deduplicated, empty ones dropped."""
    out: list[str] = []
    for td in (ctx.state.mesh.trust_domain, *ctx.state.mesh.trust_domain_aliases):
        if td and td not in out:
            out.append(td)
    return tuple(out)


def downstream_tls_context(http: bool, trust_domains: Sequence[str]) -> tls_pb2.DownstreamTlsContext:
    """The server side of mesh mTLS. As istiod, the peer certificate must not only
    chain to the root but carry a SPIFFE URI in one of `trust_domains`
    (`match_subject_alt_names` prefixes, the field istiod uses): a certificate of
    another trust domain signed by the same root is refused."""
    alpn = INBOUND_HTTP_ALPN if http else INBOUND_TCP_ALPN
    ctx = tls_pb2.DownstreamTlsContext(common_tls_context=mesh_common_tls_context(alpn))
    ctx.require_client_certificate.value = True
    ctx.common_tls_context.tls_params.cipher_suites.extend(INBOUND_CIPHER_SUITES)
    vc = ctx.common_tls_context.combined_validation_context.default_validation_context
    for td in trust_domains:
        vc.match_subject_alt_names.add(prefix=f"spiffe://{td}/")
    return ctx


def tls_inspector() -> listener_components_pb2.ListenerFilter:
    f = listener_components_pb2.ListenerFilter(name=TLS_INSPECTOR)
    f.typed_config.Pack(tls_inspector_pb2.TlsInspector())
    return f


def forward_client_cert(manager: hcm.HttpConnectionManager) -> None:
    """As istiod's inbound HCM: pass the peer's identity to the app in
    X-Forwarded-Client-Cert (URI=spiffe://...), keeping what came before."""
    manager.forward_client_cert_details = hcm.HttpConnectionManager.APPEND_FORWARD
    details = manager.set_current_client_cert_details
    details.subject.value = True
    details.uri = True
    details.dns = True


def apply_inbound(
    lst: listener_pb2.Listener,
    plaintext: listener_components_pb2.FilterChain,
    mode: MTLSMode,
    *,
    http: bool,
    trust_domains: Sequence[str],
) -> None:
    """Put the filter chains for `mode` on an inbound listener. `plaintext` is the
    chain that serves the app without TLS; the mTLS chain is a copy of it with the
    match and the DownstreamTlsContext; `trust_domains` is
    `validation_trust_domains(ctx)`: the peer SANs the chain accepts."""
    if mode == MTLSMode.DISABLE:
        lst.filter_chains.append(plaintext)
        return
    lst.listener_filters.append(tls_inspector())
    secure = listener_components_pb2.FilterChain()
    secure.CopyFrom(plaintext)
    secure.name = "mtls"
    secure.filter_chain_match.transport_protocol = "tls"
    secure.filter_chain_match.application_protocols.extend(INBOUND_MTLS_ALPN_MATCH)
    secure.transport_socket.name = TLS_SOCKET
    secure.transport_socket.typed_config.Pack(downstream_tls_context(http, trust_domains))
    lst.filter_chains.append(secure)
    if mode == MTLSMode.PERMISSIVE:
        plaintext.name = "plaintext"
        lst.filter_chains.append(plaintext)
