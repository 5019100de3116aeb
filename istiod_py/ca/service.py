"""The IstioCertificateService gRPC servicer, and istiod's serving credentials for port 15012."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

import grpc

from istiod_py.ca._proto import ca_pb2, ca_pb2_grpc
from istiod_py.ca.authn import AuthContext, Authenticator
from istiod_py.ca.errors import (
    AuthenticationError,
    CSRParseError,
    InvalidRequestError,
    PermissionDeniedError,
)
from istiod_py.ca.metrics import CAMetrics
from istiod_py.ca.signer import CertificateAuthority

log = logging.getLogger(__name__)


class IstioCertificateServiceServicer(ca_pb2_grpc.IstioCertificateServiceServicer):  # type: ignore[misc]
    def __init__(
        self,
        ca: CertificateAuthority,
        authenticator: Authenticator,
        metrics: CAMetrics | None = None,
    ) -> None:
        self._ca = ca
        self._authn = authenticator
        self._metrics = metrics if metrics is not None else CAMetrics(registry=None)
        self._metrics.root_cert_expiry = ca.bundle.root_cert.not_valid_after_utc.timestamp()
        self._metrics.cert_chain_expiry = ca.bundle.signing_cert.not_valid_after_utc.timestamp()

    async def CreateCertificate(self, request: Any, context: Any) -> Any:
        m = self._metrics
        m.csr()
        try:
            identity = await self._authn.authenticate(AuthContext.from_grpc(context))
        except AuthenticationError as e:
            m.auth_failure()
            log.info("CSR from %s refused: authentication failed: %s", context.peer(), e)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"authentication failed: {e}")
            raise AssertionError("unreachable") from None
        ttl: dt.timedelta | None = None
        try:
            # proto3 cannot tell 0 from unset: 0 means "default TTL"; negative values are refused.
            ttl = self._ca.ttl_from_seconds(int(request.validity_duration))
            chain = self._ca.sign_csr(request.csr, identity, ttl)
        except CSRParseError as e:
            m.csr_parsing_error()
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad CSR: {e}")
        except InvalidRequestError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except PermissionDeniedError as e:
            m.id_extraction_error()
            log.info("CSR from %s (%s) refused: %s", context.peer(), identity, e)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(e))
        except Exception as e:
            m.sign_error()
            log.exception("signing a CSR for %s failed", identity)
            await context.abort(grpc.StatusCode.INTERNAL, f"signing failed: {type(e).__name__}")
        else:
            m.success()
            log.info("issued a certificate for %s (ttl %s)", identity, ttl or self._ca.options.default_ttl)
            return ca_pb2.IstioCertificateResponse(cert_chain=chain)
        raise AssertionError("unreachable")


def add_ca_service(
    server: Any,
    ca: CertificateAuthority,
    authenticator: Authenticator,
    metrics: CAMetrics | None = None,
) -> IstioCertificateServiceServicer:
    """Register the CA service on an existing `grpc.aio.Server` (xDS and CA share port 15012)."""
    servicer = IstioCertificateServiceServicer(ca, authenticator, metrics)
    ca_pb2_grpc.add_IstioCertificateServiceServicer_to_server(servicer, server)
    return servicer


def server_credentials(
    ca: CertificateAuthority,
    dns_names: Sequence[str] = ("istiod.istio-system.svc", "localhost"),
    ip_addresses: Sequence[str] = ("127.0.0.1",),
    require_client_cert: bool = False,
) -> Any:
    """TLS credentials for the secure port, with a fresh serving cert issued by the CA.

    grpcio's Python API cannot ask for an *optional* client certificate (Go's
    VerifyClientCertIfGiven): without `require_client_cert` none is requested, so
    ClientCertAuthenticator only sees certificates on a port built with `require_client_cert=True`
    (client certs are then verified against the mesh root). Workloads on 15012 renew with tokens.
    """
    chain, key = ca.issue_serving_cert(dns_names, ip_addresses)
    return grpc.ssl_server_credentials(
        [(key, chain)],
        root_certificates=ca.root_pem.encode("ascii"),
        require_client_auth=require_client_cert,
    )
