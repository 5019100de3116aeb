"""Signing workload certificates: CSR checks, SPIFFE SAN, lifetime policy."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from istiod_py.ca.bundle import CAKeyCertBundle
from istiod_py.ca.errors import CSRParseError, InvalidValidityError, PermissionDeniedError
from istiod_py.ca.keys import SigningKey, cert_to_pem, generate_key, key_to_pem, sign_hash_for
from istiod_py.ca.spiffe import DEFAULT_TRUST_DOMAIN, Identity

MAX_CSR_PEM_BYTES = 64 * 1024
MIN_RSA_BITS = 2048
ALLOWED_CURVES = (ec.SECP256R1, ec.SECP384R1)
DEFAULT_CERT_TTL = dt.timedelta(hours=24)
DEFAULT_MAX_CERT_TTL = dt.timedelta(days=90)
# Tolerate clock skew between the CA and the peers that check the certificate.
BACKDATE = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class CAOptions:
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    default_ttl: dt.timedelta = DEFAULT_CERT_TTL
    max_ttl: dt.timedelta = DEFAULT_MAX_CERT_TTL
    max_csr_bytes: int = MAX_CSR_PEM_BYTES


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _leaf_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=True,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def parse_csr(csr_pem: str | bytes, max_bytes: int = MAX_CSR_PEM_BYTES) -> x509.CertificateSigningRequest:
    """Parse and check a PEM CSR: size, syntax, self-signature, key algorithm and size."""
    data = csr_pem.encode("utf-8") if isinstance(csr_pem, str) else csr_pem
    if not data.strip():
        raise CSRParseError("CSR is empty: send a PEM-encoded PKCS#10 request in the 'csr' field")
    if len(data) > max_bytes:
        raise CSRParseError(f"CSR is {len(data)} bytes, over the {max_bytes}-byte limit")
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError as e:
        raise CSRParseError(f"CSR is not a PEM-encoded PKCS#10 request: {e}") from e
    try:
        valid = csr.is_signature_valid
    except Exception as e:  # unsupported signature algorithms surface as assorted exceptions
        raise CSRParseError(f"CSR signature cannot be checked: {e}") from e
    if not valid:
        raise CSRParseError("CSR signature does not verify: it was altered or signed with another key")
    try:
        pub = csr.public_key()
    except Exception as e:
        raise CSRParseError(f"CSR public key is not supported: {e}") from e
    if isinstance(pub, rsa.RSAPublicKey):
        if pub.key_size < MIN_RSA_BITS:
            raise CSRParseError(f"CSR RSA key is {pub.key_size} bits; at least {MIN_RSA_BITS} are required")
    elif isinstance(pub, ec.EllipticCurvePublicKey):
        if not isinstance(pub.curve, ALLOWED_CURVES):
            raise CSRParseError(f"CSR EC key uses curve {pub.curve.name}; use P-256 (or P-384)")
    else:
        raise CSRParseError(f"CSR key type {type(pub).__name__} is not supported; use ECDSA P-256 or RSA")
    return csr


def csr_asks_for_ca(csr: x509.CertificateSigningRequest) -> bool:
    """Whether the CSR requests basicConstraints CA:TRUE (a signing certificate, not a workload leaf)."""
    try:
        bc = csr.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    except ValueError as e:
        raise CSRParseError(f"CSR extensions are malformed: {e}") from e
    return bool(bc.ca)


def csr_uri_sans(csr: x509.CertificateSigningRequest) -> list[str]:
    """The identities a CSR asks for (its SAN entries, URIs as strings; other kinds tagged by type)."""
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    except ValueError as e:
        raise CSRParseError(f"CSR extensions are malformed: {e}") from e
    out: list[str] = []
    for name in san:
        if isinstance(name, x509.UniformResourceIdentifier):
            out.append(name.value)
        else:
            out.append(f"{type(name).__name__}:{name.value}")
    return out


class CertificateAuthority:
    """Signs workload CSRs with the bundle's signing key. Pure and synchronous (CPU-bound, fast)."""

    def __init__(
        self,
        bundle: CAKeyCertBundle,
        options: CAOptions | None = None,
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self.bundle = bundle
        self.options = options or CAOptions()
        self._clock = clock

    @property
    def trust_domain(self) -> str:
        return self.options.trust_domain

    @property
    def root_pem(self) -> str:
        return self.bundle.root_pem

    @staticmethod
    def ttl_from_seconds(seconds: int) -> dt.timedelta | None:
        """A request's validity_duration (int64 seconds; 0 = unset) as a lifetime. Values beyond
        what a timedelta holds (about 2.7e11 years) are refused rather than crashing the call."""
        if seconds == 0:
            return None
        try:
            return dt.timedelta(seconds=seconds)
        except OverflowError:
            raise InvalidValidityError(
                f"requested validity {seconds}s is out of range; send a positive number of seconds "
                "(lifetimes are capped at the CA's maximum) or leave it unset for the default"
            ) from None

    def resolve_ttl(self, requested: dt.timedelta | None) -> dt.timedelta:
        """None → default TTL; ≤ 0 refused; above the maximum → capped to the maximum."""
        if requested is None:
            return self.options.default_ttl
        if requested <= dt.timedelta(0):
            raise InvalidValidityError(
                f"requested validity {int(requested.total_seconds())}s is not positive; "
                "send a positive number of seconds or leave it unset for the default"
            )
        return min(requested, self.options.max_ttl)

    def sign_csr(
        self,
        csr_pem: str | bytes,
        identity: Identity,
        ttl: dt.timedelta | None = None,
    ) -> list[str]:
        """Issue a leaf for `identity`; returns the PEM chain, leaf first and root last."""
        lifetime = self.resolve_ttl(ttl)
        csr = parse_csr(csr_pem, self.options.max_csr_bytes)
        want = identity.spiffe_uri(self.trust_domain)
        if csr_asks_for_ca(csr):
            # The leaf would be CA:FALSE anyway; refusing says so instead of silently issuing
            # something other than what was asked (docs/threat-model.md).
            raise PermissionDeniedError(
                f"CSR asks for a CA certificate (basicConstraints CA:TRUE); workloads ({want}) only get "
                "leaf certificates: drop the basicConstraints extension or set CA:FALSE"
            )
        requested = csr_uri_sans(csr)
        if requested and requested != [want]:
            raise PermissionDeniedError(
                f"CSR asks for identities {requested} but the caller is authenticated as {want}; "
                f"a workload can only get a certificate for its own identity"
            )
        cert = self._issue(
            csr.public_key(),  # type: ignore[arg-type]
            [x509.UniformResourceIdentifier(want)],
            lifetime,
            subject=x509.Name([]),
        )
        return [cert_to_pem(cert), *self.bundle.chain_pems()]

    def _issue(
        self,
        public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
        sans: Sequence[x509.GeneralName],
        lifetime: dt.timedelta,
        subject: x509.Name,
    ) -> x509.Certificate:
        now = self._clock()
        issuer = self.bundle.signing_cert
        not_after = min(now + lifetime, issuer.not_valid_after_utc)
        # An empty subject requires a critical SAN (RFC 5280 4.2.1.6), which is also what SPIFFE asks.
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_leaf_key_usage(), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName(list(sans)), critical=len(subject) == 0)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.bundle.signing_key.public_key()),
                critical=False,
            )
        )
        key: SigningKey = self.bundle.signing_key
        return builder.sign(key, sign_hash_for(key))

    def issue_serving_cert(
        self,
        dns_names: Sequence[str] = ("istiod.istio-system.svc", "localhost"),
        ip_addresses: Sequence[str] = ("127.0.0.1",),
        ttl: dt.timedelta | None = None,
    ) -> tuple[bytes, bytes]:
        """istiod's own TLS certificate: returns (cert chain PEM leaf..root, private key PEM)."""
        key = generate_key("ec-p256")
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
        lifetime = ttl or self.options.default_ttl
        subject = x509.Name([])
        cert = self._issue(key.public_key(), sans, lifetime, subject)
        chain = "".join([cert_to_pem(cert), *self.bundle.chain_pems()])
        return chain.encode("ascii"), key_to_pem(key)
