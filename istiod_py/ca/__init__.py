"""The built-in CA (Citadel's role): root management, CSR signing, authenticators, gRPC service."""

from istiod_py.ca.authn import (
    AuthContext,
    Authenticator,
    ChainAuthenticator,
    ClientCertAuthenticator,
    KubeJWTAuthenticator,
    TokenFileAuthenticator,
    TokenReviewer,
)
from istiod_py.ca.bundle import (
    CAKeyCertBundle,
    create_self_signed_root,
    load_ca_bundle,
    load_or_create_root,
    load_plugin_cacerts,
)
from istiod_py.ca.errors import (
    AuthenticationError,
    CAConfigError,
    CAError,
    CSRParseError,
    InvalidRequestError,
    InvalidValidityError,
    PermissionDeniedError,
)
from istiod_py.ca.metrics import CAMetrics
from istiod_py.ca.service import IstioCertificateServiceServicer, add_ca_service, server_credentials
from istiod_py.ca.signer import CAOptions, CertificateAuthority, parse_csr
from istiod_py.ca.spiffe import DEFAULT_TRUST_DOMAIN, Identity, parse_spiffe_uri

__all__ = [
    "DEFAULT_TRUST_DOMAIN",
    "AuthContext",
    "AuthenticationError",
    "Authenticator",
    "CAConfigError",
    "CAError",
    "CAKeyCertBundle",
    "CAMetrics",
    "CAOptions",
    "CSRParseError",
    "CertificateAuthority",
    "ChainAuthenticator",
    "ClientCertAuthenticator",
    "Identity",
    "InvalidRequestError",
    "InvalidValidityError",
    "IstioCertificateServiceServicer",
    "KubeJWTAuthenticator",
    "PermissionDeniedError",
    "TokenFileAuthenticator",
    "TokenReviewer",
    "add_ca_service",
    "create_self_signed_root",
    "load_ca_bundle",
    "load_or_create_root",
    "load_plugin_cacerts",
    "parse_csr",
    "parse_spiffe_uri",
    "server_credentials",
]
