"""The CA's own key material: a persisted self-signed root, or a plug-in CA in Istio's cacerts layout."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from istiod_py.ca.errors import CAConfigError
from istiod_py.ca.keys import (
    KeyType,
    SigningKey,
    cert_to_pem,
    generate_key,
    key_to_pem,
    load_signing_key,
    sign_hash_for,
    write_private_file,
    write_public_file,
)
from istiod_py.ca.spiffe import DEFAULT_TRUST_DOMAIN

log = logging.getLogger(__name__)

# Self-signed mode file names (kept apart from the plug-in names so one directory is never ambiguous).
ROOT_CERT_FILE = "root-cert.pem"
ROOT_KEY_FILE = "root-key.pem"
# Istio's plug-in CA layout (the `cacerts` secret).
PLUGIN_CA_CERT = "ca-cert.pem"
PLUGIN_CA_KEY = "ca-key.pem"
PLUGIN_ROOT_CERT = "root-cert.pem"
PLUGIN_CERT_CHAIN = "cert-chain.pem"

DEFAULT_ROOT_TTL = dt.timedelta(days=3650)


@dataclass(frozen=True)
class CAKeyCertBundle:
    """What the CA signs with.

    `chain` runs from the signing certificate up to and including the root (root last); for a
    self-signed root it is just `[root]`. Served chains are `leaf + chain`.
    """

    signing_key: SigningKey
    signing_cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    self_signed: bool

    @property
    def root_cert(self) -> x509.Certificate:
        return self.chain[-1]

    @property
    def root_pem(self) -> str:
        return cert_to_pem(self.root_cert)

    def chain_pems(self) -> list[str]:
        return [cert_to_pem(c) for c in self.chain]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def create_self_signed_root(
    trust_domain: str = DEFAULT_TRUST_DOMAIN,
    ttl: dt.timedelta = DEFAULT_ROOT_TTL,
    key_type: KeyType = "rsa-2048",
    org: str | None = None,
) -> tuple[SigningKey, x509.Certificate]:
    key = generate_key(key_type)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org or trust_domain)])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + ttl)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, sign_hash_for(key))
    )
    return key, cert


def _public_keys_match(key: SigningKey, cert: x509.Certificate) -> bool:
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    return key.public_key().public_bytes(enc, fmt) == cert.public_key().public_bytes(enc, fmt)


def load_or_create_root(
    directory: str | os.PathLike[str],
    trust_domain: str = DEFAULT_TRUST_DOMAIN,
    ttl: dt.timedelta = DEFAULT_ROOT_TTL,
    key_type: KeyType = "rsa-2048",
) -> CAKeyCertBundle:
    """Self-signed mode: reuse the root persisted in `directory`, creating it on first start."""
    d = Path(directory)
    cert_path, key_path = d / ROOT_CERT_FILE, d / ROOT_KEY_FILE
    if cert_path.exists() and key_path.exists():
        try:
            key = load_signing_key(key_path.read_bytes(), str(key_path))
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except ValueError as e:
            raise CAConfigError(f"cannot load the persisted CA root from {d}: {e}") from e
        if not _public_keys_match(key, cert):
            raise CAConfigError(f"{key_path} does not match {cert_path}: restore the pair or remove both")
        if (key_path.stat().st_mode & 0o077) != 0:
            log.warning("%s is readable by group/others; tightening to 0600", key_path)
            os.chmod(key_path, 0o600)
        log.info("reusing CA root from %s (expires %s)", d, cert.not_valid_after_utc.isoformat())
        return CAKeyCertBundle(key, cert, (cert,), self_signed=True)
    if cert_path.exists() or key_path.exists():
        raise CAConfigError(
            f"{d} holds only one of {ROOT_CERT_FILE}/{ROOT_KEY_FILE}: restore the pair or remove the other"
        )
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    key, cert = create_self_signed_root(trust_domain, ttl, key_type)
    # Key first: a crash between the writes leaves a key without cert, which we refuse loudly above.
    write_private_file(key_path, key_to_pem(key))
    write_public_file(cert_path, cert_to_pem(cert).encode("ascii"))
    log.info("created a new self-signed CA root in %s", d)
    return CAKeyCertBundle(key, cert, (cert,), self_signed=True)


def _read_certs(path: Path) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except ValueError as e:
        raise CAConfigError(f"{path}: not a PEM certificate file: {e}") from e


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return bc.ca


def load_plugin_cacerts(directory: str | os.PathLike[str]) -> CAKeyCertBundle:
    """Plug-in mode: Istio's cacerts layout (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem)."""
    d = Path(directory)
    for name in (PLUGIN_CA_CERT, PLUGIN_CA_KEY, PLUGIN_ROOT_CERT):
        if not (d / name).is_file():
            raise CAConfigError(f"plug-in CA directory {d} is missing {name}")
    try:
        key = load_signing_key((d / PLUGIN_CA_KEY).read_bytes(), str(d / PLUGIN_CA_KEY))
    except ValueError as e:
        raise CAConfigError(f"{d / PLUGIN_CA_KEY}: {e}") from e
    ca_cert = _read_certs(d / PLUGIN_CA_CERT)[0]
    roots = _read_certs(d / PLUGIN_ROOT_CERT)
    root = roots[0]
    if not _public_keys_match(key, ca_cert):
        raise CAConfigError(f"{d / PLUGIN_CA_KEY} does not match {d / PLUGIN_CA_CERT}")
    if not _is_ca(ca_cert):
        raise CAConfigError(f"{d / PLUGIN_CA_CERT} is not a CA certificate (basicConstraints CA:TRUE)")
    chain = _read_certs(d / PLUGIN_CERT_CHAIN) if (d / PLUGIN_CERT_CHAIN).is_file() else [ca_cert]
    if chain[0] != ca_cert:
        chain.insert(0, ca_cert)
    if chain[-1] != root:
        chain.append(root)
    for child, parent in itertools.pairwise(chain):
        try:
            child.verify_directly_issued_by(parent)
        except Exception as e:  # signature failures raise several types
            raise CAConfigError(
                f"plug-in CA chain in {d} is broken: {child.subject.rfc4514_string()} is not issued by "
                f"{parent.subject.rfc4514_string()} ({e or type(e).__name__})"
            ) from e
    return CAKeyCertBundle(key, ca_cert, tuple(chain), self_signed=False)


def load_ca_bundle(
    directory: str | os.PathLike[str],
    trust_domain: str = DEFAULT_TRUST_DOMAIN,
) -> CAKeyCertBundle:
    """Plug-in CA when `directory` holds ca-key.pem (Istio's cacerts), else a persisted self-signed root."""
    if (Path(directory) / PLUGIN_CA_KEY).exists():
        return load_plugin_cacerts(directory)
    return load_or_create_root(directory, trust_domain)
