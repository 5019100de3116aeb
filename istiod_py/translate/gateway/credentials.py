"""Gateway server TLS (file mode): Istio `ServerTLSSettings` -> Envoy
DownstreamTlsContext.

Two ways to hand the gateway its certificate, picked per proxy:

- SDS (as istiod): a router proxy started by `istiod-py agent` (node metadata
  `SDS: "true"`, see `mtls.sds_capable`) gets SDS secret references on the
  `sds-grpc` cluster, named as istiod names file-mounted credentials:
  `file-cert:<serverCertificate>~<privateKey>` (tls_certificate) and, for
  MUTUAL/OPTIONAL_MUTUAL, `file-root:<caCertificates>` (the validation context,
  combined with the SAN/SPKI/hash/CRL checks of the server). The agent
  (`agent/sds.py`) reads those files on the gateway host, watches them and
  pushes a new secret when they change: a rotated certificate is served without
  any config change.
- Files (fallback): a proxy without the `sds-grpc` cluster (plain
  `istiod-py bootstrap`) gets the paths in the DownstreamTlsContext
  (`DataSource.filename`); its Envoy reads them itself and does not see a
  rotated file until the listener changes.

Translation stays pure either way: the paths are names here, never read.

`credentialName` (a Kubernetes Secret; `credentialNames` for several) is served
as istiod serves it: SDS over the proxy's own ADS stream (`ads: {}`), resource
`kubernetes://NAME` (as written, when it already names a scheme, such as the
`kubernetes-gateway://NS/NAME` the Gateway API conversion emits) and, for
MUTUAL/OPTIONAL_MUTUAL, its CA as `<that name>-cacert`. Any proxy can take
these (no `sds-grpc` cluster needed); `istiod_py/kube/credentials.py` answers
them from the cluster's Secrets.
"""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from istio.networking.v1alpha3 import gateway_pb2

from ..credential_sds import CA_SUFFIX, ads_config, credential_secret_name
from ..security import mtls

TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"

ServerTLS = gateway_pb2.ServerTLSSettings

_TLS_VERSIONS: dict[int, Any] = {
    ServerTLS.TLS_AUTO: common_pb2.TlsParameters.TLS_AUTO,
    ServerTLS.TLSV1_0: common_pb2.TlsParameters.TLSv1_0,
    ServerTLS.TLSV1_1: common_pb2.TlsParameters.TLSv1_1,
    ServerTLS.TLSV1_2: common_pb2.TlsParameters.TLSv1_2,
    ServerTLS.TLSV1_3: common_pb2.TlsParameters.TLSv1_3,
}


FILE_CERT_PREFIX = "file-cert:"
FILE_ROOT_PREFIX = "file-root:"


def file_cert_secret_name(cert: str, key: str) -> str:
    """istiod's SDS name for a file-mounted certificate and key."""
    return f"{FILE_CERT_PREFIX}{cert}~{key}"


def file_root_secret_name(ca: str) -> str:
    """istiod's SDS name for a file-mounted CA bundle (client certificate validation)."""
    return f"{FILE_ROOT_PREFIX}{ca}"


def _credentials(tls: Any) -> list[str]:
    names = [str(tls.credential_name)] if tls.credential_name else []
    return names + [str(n) for n in tls.credential_names if n and n not in names]


def terminates_tls(tls: Any) -> bool:
    return int(tls.mode) in (ServerTLS.SIMPLE, ServerTLS.MUTUAL, ServerTLS.OPTIONAL_MUTUAL)


def unsupported_reason(tls: Any) -> str:
    """Why a TLS-terminating server cannot be served yet ("" when it can)."""
    if int(tls.mode) == ServerTLS.ISTIO_MUTUAL:
        return "tls.mode ISTIO_MUTUAL on a gateway server is not supported yet"
    if not terminates_tls(tls):
        return ""
    if _credentials(tls):
        return ""
    if not _pairs(tls):
        return "tls needs serverCertificate and privateKey (file paths)"
    if int(tls.mode) in (ServerTLS.MUTUAL, ServerTLS.OPTIONAL_MUTUAL) and not _ca(tls):
        return "tls.mode MUTUAL needs caCertificates (a file path)"
    return ""


def _pairs(tls: Any) -> list[tuple[str, str]]:
    out = []
    if tls.server_certificate and tls.private_key:
        out.append((tls.server_certificate, tls.private_key))
    for c in tls.tls_certificates:
        if c.server_certificate and c.private_key:
            out.append((c.server_certificate, c.private_key))
    return out


def _ca(tls: Any) -> str:
    if tls.ca_certificates:
        return str(tls.ca_certificates)
    for c in tls.tls_certificates:
        if c.ca_certificates:
            return str(c.ca_certificates)
    return ""


def downstream_tls_context(
    tls: Any, alpn: tuple[str, ...] = ("h2", "http/1.1"), *, sds: bool = False
) -> tls_pb2.DownstreamTlsContext:
    """The server side of a SIMPLE or MUTUAL gateway server. Call only when
    `unsupported_reason(tls)` is empty. With `sds` (the proxy has the `sds-grpc`
    cluster) the certificates are SDS secrets named `file-cert:`/`file-root:`,
    otherwise file paths Envoy reads itself."""
    ctx = tls_pb2.DownstreamTlsContext()
    common = ctx.common_tls_context
    common.alpn_protocols.extend(alpn)
    creds = _credentials(tls)
    for cred in creds:
        common.tls_certificate_sds_secret_configs.add(name=credential_secret_name(cred), sds_config=ads_config())
    for cert, key in [] if creds else _pairs(tls):
        if sds:
            common.tls_certificate_sds_secret_configs.add(
                name=file_cert_secret_name(cert, key), sds_config=mtls.sds_config()
            )
        else:
            common.tls_certificates.add(
                certificate_chain=base_pb2.DataSource(filename=cert),
                private_key=base_pb2.DataSource(filename=key),
            )
    params = common.tls_params
    # Istio's gateway default floor is TLS 1.2.
    if int(tls.min_protocol_version) == ServerTLS.TLS_AUTO:
        params.tls_minimum_protocol_version = common_pb2.TlsParameters.TLSv1_2
    else:
        params.tls_minimum_protocol_version = _TLS_VERSIONS[int(tls.min_protocol_version)]
    if int(tls.max_protocol_version) != ServerTLS.TLS_AUTO:
        params.tls_maximum_protocol_version = _TLS_VERSIONS[int(tls.max_protocol_version)]
    params.cipher_suites.extend(tls.cipher_suites)
    mode = int(tls.mode)
    if mode in (ServerTLS.MUTUAL, ServerTLS.OPTIONAL_MUTUAL):
        if creds:  # as istiod: the first credential's CA, `<name>-cacert` over ADS
            combined = common.combined_validation_context
            vc = combined.default_validation_context
            vc.SetInParent()
            combined.validation_context_sds_secret_config.name = credential_secret_name(creds[0]) + CA_SUFFIX
            combined.validation_context_sds_secret_config.sds_config.CopyFrom(ads_config())
        elif sds:
            # As istiod: the checks stay inline, the trusted CA comes from SDS.
            combined = common.combined_validation_context
            vc = combined.default_validation_context
            vc.SetInParent()
            combined.validation_context_sds_secret_config.name = file_root_secret_name(_ca(tls))
            combined.validation_context_sds_secret_config.sds_config.CopyFrom(mtls.sds_config())
        else:
            vc = common.validation_context
            vc.trusted_ca.filename = _ca(tls)
        if tls.ca_crl:
            vc.crl.filename = tls.ca_crl
        for san in tls.subject_alt_names:
            vc.match_typed_subject_alt_names.add(
                san_type=common_pb2.SubjectAltNameMatcher.URI if "://" in san else common_pb2.SubjectAltNameMatcher.DNS,
                matcher=string_pb2.StringMatcher(exact=san),
            )
        vc.verify_certificate_spki.extend(tls.verify_certificate_spki)
        vc.verify_certificate_hash.extend(tls.verify_certificate_hash)
        ctx.require_client_certificate.value = mode == ServerTLS.MUTUAL
    return ctx
