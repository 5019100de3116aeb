"""Key-pair and PEM helpers shared by the CA and the agent."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

KeyType = Literal["ec-p256", "rsa-2048"]
SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def generate_key(key_type: KeyType = "ec-p256") -> SigningKey:
    if key_type == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unsupported key type {key_type!r}: use 'ec-p256' or 'rsa-2048'")


def key_to_pem(key: SigningKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_signing_key(pem: bytes, source: str) -> SigningKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"{source}: only EC and RSA CA keys are supported, got {type(key).__name__}")
    return key


def cert_to_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def sign_hash_for(key: CertificateIssuerPrivateKeyTypes) -> hashes.SHA256:
    # SHA-256 everywhere: what Istio and every Envoy build accept.
    return hashes.SHA256()


def write_private_file(path: Path, data: bytes) -> None:
    """Write a secret file readable only by the owner, atomically (never world-readable, even briefly)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_public_file(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
