"""DestinationRule `trafficPolicy.tls` -> the cluster's upstream TLS transport socket.

DISABLE, SIMPLE and MUTUAL (certificates from files on the proxy's host, or
with `credentialName` a Kubernetes Secret over SDS on the proxy's ADS stream, as
istiod: `kubernetes://NAME` for the client certificate, `kubernetes://NAME-cacert`
for the CA; kube/credentials.py answers them) are built here. ISTIO_MUTUAL (the
mesh's own mTLS with SDS workload certificates) and auto mTLS are
security/mtls.py's: it reads the same merged policy (`policy_for`).
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo
from istio.networking.v1alpha3 import destination_rule_pb2 as dr_pb

from istiod_py.model.service import Port
from istiod_py.translate.credential_sds import CA_SUFFIX, ads_config, credential_secret_name

TLS_SOCKET = "envoy.transport_sockets.tls"
H2_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
# Used when a DestinationRule asks for SIMPLE/MUTUAL without caCertificates:
# Istio (VERIFY_CERTIFICATE_AT_CLIENT, on by default) then verifies against the
# system roots of the proxy's host.
SYSTEM_ROOTS = "/etc/ssl/certs/ca-certificates.crt"

Mode = dr_pb.ClientTLSSettings.TLSmode


def apply_client_tls(cluster: cluster_pb2.Cluster, tls: dr_pb.ClientTLSSettings, port: Port) -> None:
    if tls.mode == Mode.ISTIO_MUTUAL:
        return  # built by security/mtls.py
    # An explicit mode turns auto mTLS off for this cluster, as in Istio.
    cluster.ClearField("transport_socket_matches")
    cluster.ClearField("transport_socket")
    if tls.mode == Mode.DISABLE:
        return
    ctx = upstream_tls_context(tls, port)
    cluster.transport_socket.name = TLS_SOCKET
    cluster.transport_socket.typed_config.Pack(ctx)
    if not tls.sni and port.protocol.is_http:
        # No SNI given: as istiod (ENABLE_AUTO_SNI) take it from the request's Host,
        # and check the certificate against it unless SANs were given.
        opts = hpo.HttpProtocolOptions()
        if H2_OPTIONS_KEY in cluster.typed_extension_protocol_options:
            cluster.typed_extension_protocol_options[H2_OPTIONS_KEY].Unpack(opts)
        opts.upstream_http_protocol_options.auto_sni = True
        verify = not (tls.HasField("insecure_skip_verify") and tls.insecure_skip_verify.value)
        if verify and not tls.subject_alt_names:
            opts.upstream_http_protocol_options.auto_san_validation = True
        if opts.WhichOneof("upstream_protocol_options") is None:
            opts.explicit_http_config.http_protocol_options.SetInParent()
        cluster.typed_extension_protocol_options[H2_OPTIONS_KEY].Pack(opts)


def upstream_tls_context(tls: dr_pb.ClientTLSSettings, port: Port) -> tls_pb2.UpstreamTlsContext:
    ctx = tls_pb2.UpstreamTlsContext(sni=tls.sni)
    common = ctx.common_tls_context
    if tls.credential_name:
        _credential_context(ctx, tls)
    elif tls.mode == Mode.MUTUAL:
        cert = common.tls_certificates.add()
        cert.certificate_chain.filename = tls.client_certificate
        cert.private_key.filename = tls.private_key
    insecure = tls.HasField("insecure_skip_verify") and tls.insecure_skip_verify.value
    if not insecure and not tls.credential_name:
        # Envoy refuses SAN checks without a trusted CA, so insecureSkipVerify
        # skips both.
        vc = common.validation_context
        vc.trusted_ca.filename = tls.ca_certificates or SYSTEM_ROOTS
        if tls.ca_crl:
            vc.crl.filename = tls.ca_crl
        for san in tls.subject_alt_names:
            m = vc.match_typed_subject_alt_names.add()
            m.san_type = common_pb2.SubjectAltNameMatcher.DNS
            m.matcher.exact = san
    if port.protocol.is_http2:
        common.alpn_protocols.append("h2")
    return ctx


def _credential_context(ctx: tls_pb2.UpstreamTlsContext, tls: dr_pb.ClientTLSSettings) -> None:
    """credentialName: the client pair (MUTUAL) and the CA from the Secret over SDS;
    SAN checks stay inline in the combined validation context."""
    common = ctx.common_tls_context
    name = credential_secret_name(str(tls.credential_name))
    if tls.mode == Mode.MUTUAL:
        common.tls_certificate_sds_secret_configs.add(name=name, sds_config=ads_config())
    if tls.HasField("insecure_skip_verify") and tls.insecure_skip_verify.value:
        return
    combined = common.combined_validation_context
    vc = combined.default_validation_context
    vc.SetInParent()
    for san in tls.subject_alt_names:
        m = vc.match_typed_subject_alt_names.add()
        m.san_type = common_pb2.SubjectAltNameMatcher.DNS
        m.matcher.exact = san
    combined.validation_context_sds_secret_config.name = name + CA_SUFFIX
    combined.validation_context_sds_secret_config.sds_config.CopyFrom(ads_config())
