"""A listener's `tls` -> the Istio server's TLS settings.

- Passthrough: PASSTHROUGH (routes by SNI, TLSRoute).
- Terminate with `certificateRefs`: as istiod, `credentialName:
  kubernetes-gateway://NS/NAME`, after the ReferenceGrant check for another
  namespace's Secret. istiod_py serves no Kubernetes Secrets yet, so such a listener
  is reported Programmed=False with the reason.
- Terminate with istiod_py's file options (the spec allows `options` instead of
  `certificateRefs`; their keys are implementation-specific): the certificate files on
  the gateway's host, as an Istio Gateway's `serverCertificate`/`privateKey`/
  `caCertificates` (served through the agent's SDS `file-cert:`, as those are).
  `gateway.istio.io/tls-terminate-mode: MUTUAL` asks for client certificates, as in istiod.
"""

from __future__ import annotations

from typing import Any

from istio.networking.v1alpha3 import gateway_pb2

from istiod_py.config.model import Config

from . import status as S
from .refs import Grants

OPT_CERT = "istiod-py.io/server-certificate"
OPT_KEY = "istiod-py.io/private-key"
OPT_CA = "istiod-py.io/ca-certificates"
OPT_MODE = "gateway.istio.io/tls-terminate-mode"
FILE_OPTIONS = (OPT_CERT, OPT_KEY, OPT_CA)


def _bad(reason: str, message: str) -> tuple[None, S.Condition]:
    return None, S.Condition(S.RESOLVED_REFS, False, reason, message)


def listener_tls(gw: Config, lis: Any, grants: Grants) -> tuple[Any, S.Condition | None]:
    """The server TLS settings, or the ResolvedRefs=False condition that prevents them."""
    tls = gateway_pb2.ServerTLSSettings()
    mode = lis.tls.mode or "Terminate"
    if mode == "Passthrough":
        tls.mode = gateway_pb2.ServerTLSSettings.PASSTHROUGH
        return tls, None
    opts = lis.tls.options
    tls.mode = gateway_pb2.ServerTLSSettings.SIMPLE
    if opts.get(OPT_MODE) == "MUTUAL":
        tls.mode = gateway_pb2.ServerTLSSettings.MUTUAL
    if any(k in opts for k in FILE_OPTIONS):
        if not (opts.get(OPT_CERT) and opts.get(OPT_KEY)):
            return _bad(S.R_INVALID_CERTIFICATE_REF, f"options {OPT_CERT} and {OPT_KEY} go together")
        tls.server_certificate, tls.private_key = opts[OPT_CERT], opts[OPT_KEY]
        if opts.get(OPT_CA):
            tls.ca_certificates = opts[OPT_CA]
        return tls, None
    if len(lis.tls.certificate_refs) != 1:
        return _bad(S.R_INVALID_CERTIFICATE_REF, "exactly 1 certificateRefs should be present for TLS termination")
    ref = lis.tls.certificate_refs[0]
    if ref.group != "" or (ref.kind or "Secret") != "Secret":
        return _bad(
            S.R_INVALID_CERTIFICATE_REF,
            f"invalid certificate reference {ref.group}/{ref.kind}/{ref.name}: only Secret is allowed",
        )
    ns = ref.namespace or gw.meta.namespace
    if not grants.allowed("Gateway", gw.meta.namespace, "Secret", ns, ref.name):
        return _bad(
            S.R_REF_NOT_PERMITTED,
            f"certificateRef {ref.name}/{ns} not accessible to a Gateway in namespace {gw.meta.namespace!r} "
            "(missing a ReferenceGrant?)",
        )
    tls.credential_name = f"kubernetes-gateway://{ns}/{ref.name}"
    return tls, None
