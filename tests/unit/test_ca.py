"""CA core: roots, plug-in hierarchy, signing policy and refusals."""

from __future__ import annotations

import datetime as dt
import itertools
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from istiod_py.ca import (
    CAConfigError,
    CAOptions,
    CertificateAuthority,
    CSRParseError,
    Identity,
    InvalidValidityError,
    PermissionDeniedError,
    create_self_signed_root,
    load_ca_bundle,
    load_or_create_root,
    load_plugin_cacerts,
)
from istiod_py.ca.keys import cert_to_pem, key_to_pem

ID = Identity("default", "sleep")
URI = "spiffe://cluster.local/ns/default/sa/sleep"


def make_csr(key: object = None, uris: list[str] | None = None) -> bytes:
    k = key or ec.generate_private_key(ec.SECP256R1())
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if uris:
        b = b.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]), critical=False
        )
    return b.sign(k, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]


def load_chain(pems: list[str]) -> list[x509.Certificate]:
    return [x509.load_pem_x509_certificate(p.encode()) for p in pems]


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(load_or_create_root(tmp_path_factory.mktemp("root")))


def test_leaf_verifies_against_root_with_spiffe_san(ca: CertificateAuthority) -> None:
    chain = load_chain(ca.sign_csr(make_csr(uris=[URI]), ID))
    assert len(chain) == 2
    leaf, root = chain
    leaf.verify_directly_issued_by(root)
    assert root == ca.bundle.root_cert
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [URI]
    bc = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca is False
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment and not ku.key_cert_sign
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}


def test_csr_without_san_gets_caller_identity(ca: CertificateAuthority) -> None:
    leaf = load_chain(ca.sign_csr(make_csr(), Identity("prod", "api")))[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://cluster.local/ns/prod/sa/api"]


def test_trust_domain_configurable(tmp_path: Path) -> None:
    ca = CertificateAuthority(load_or_create_root(tmp_path), CAOptions(trust_domain="example.org"))
    leaf = load_chain(ca.sign_csr(make_csr(), ID))[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://example.org/ns/default/sa/sleep"]


def _lifetime(pems: list[str]) -> dt.timedelta:
    leaf = load_chain(pems)[0]
    return leaf.not_valid_after_utc - dt.datetime.now(dt.UTC)


def test_ttl_default_requested_and_capped(ca: CertificateAuthority) -> None:
    slack = dt.timedelta(seconds=30)
    assert abs(_lifetime(ca.sign_csr(make_csr(), ID)) - dt.timedelta(hours=24)) < slack
    assert abs(_lifetime(ca.sign_csr(make_csr(), ID, dt.timedelta(hours=1))) - dt.timedelta(hours=1)) < slack
    assert abs(_lifetime(ca.sign_csr(make_csr(), ID, dt.timedelta(days=400))) - dt.timedelta(days=90)) < slack


def test_configurable_max_ttl(tmp_path: Path) -> None:
    opts = CAOptions(default_ttl=dt.timedelta(hours=2), max_ttl=dt.timedelta(hours=12))
    ca = CertificateAuthority(load_or_create_root(tmp_path), opts)
    slack = dt.timedelta(seconds=30)
    assert abs(_lifetime(ca.sign_csr(make_csr(), ID)) - dt.timedelta(hours=2)) < slack
    assert abs(_lifetime(ca.sign_csr(make_csr(), ID, dt.timedelta(days=1))) - dt.timedelta(hours=12)) < slack


@pytest.mark.parametrize("bad", [dt.timedelta(0), dt.timedelta(seconds=-5)])
def test_non_positive_validity_refused(ca: CertificateAuthority, bad: dt.timedelta) -> None:
    with pytest.raises(InvalidValidityError, match="not positive"):
        ca.sign_csr(make_csr(), ID, bad)


def test_rsa_and_ec_csrs(ca: CertificateAuthority) -> None:
    for key in (
        rsa.generate_private_key(65537, 2048),
        rsa.generate_private_key(65537, 3072),
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP384R1()),
    ):
        leaf = load_chain(ca.sign_csr(make_csr(key, [URI]), ID))[0]
        assert leaf.public_key() == key.public_key()


def test_small_rsa_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(CSRParseError, match="1024 bits"):
        ca.sign_csr(make_csr(rsa.generate_private_key(65537, 1024)), ID)


def test_unsupported_curve_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(CSRParseError, match="curve"):
        ca.sign_csr(make_csr(ec.generate_private_key(ec.SECP521R1())), ID)


def test_bad_signature_refused(ca: CertificateAuthority) -> None:
    der = bytearray(x509.load_pem_x509_csr(make_csr(uris=[URI])).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0xFF  # inside the signature value: still parseable, no longer valid
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CSRParseError, match="signature"):
        ca.sign_csr(tampered, ID)


def test_tampered_body_refused(ca: CertificateAuthority) -> None:
    pem = make_csr(uris=[URI])
    der = bytearray(x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER))
    i = der.find(b"default")  # inside the signed SAN: the signature no longer covers this content
    der[i : i + 7] = b"dEfault"
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CSRParseError, match="signature"):
        ca.sign_csr(tampered, ID)


def test_wrong_identity_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(PermissionDeniedError, match="own identity"):
        ca.sign_csr(make_csr(uris=["spiffe://cluster.local/ns/kube-system/sa/admin"]), ID)
    with pytest.raises(PermissionDeniedError):
        ca.sign_csr(make_csr(uris=[URI, "spiffe://cluster.local/ns/default/sa/other"]), ID)
    with pytest.raises(PermissionDeniedError):
        ca.sign_csr(make_csr(uris=["spiffe://evil.org/ns/default/sa/sleep"]), ID)


def test_oversize_and_garbage_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(CSRParseError, match="limit"):
        ca.sign_csr(b"A" * (64 * 1024 + 1), ID)
    with pytest.raises(CSRParseError, match="PKCS#10"):
        garbage = b"-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n-----END CERTIFICATE REQUEST-----\n"
        ca.sign_csr(garbage, ID)
    with pytest.raises(CSRParseError, match="PKCS#10"):
        ca.sign_csr("hello", ID)
    with pytest.raises(CSRParseError, match="empty"):
        ca.sign_csr("", ID)


def test_root_persists_across_instances(tmp_path: Path) -> None:
    d = tmp_path / "ca"
    a = load_or_create_root(d)
    b = load_or_create_root(d)
    assert a.root_cert == b.root_cert
    assert stat.S_IMODE((d / "root-key.pem").stat().st_mode) == 0o600
    # A leaf from the first instance verifies against the second's root.
    leaf = load_chain(CertificateAuthority(a).sign_csr(make_csr(), ID))[0]
    leaf.verify_directly_issued_by(CertificateAuthority(b).bundle.root_cert)


def test_half_present_root_refused(tmp_path: Path) -> None:
    load_or_create_root(tmp_path)
    (tmp_path / "root-cert.pem").unlink()
    with pytest.raises(CAConfigError, match="only one"):
        load_or_create_root(tmp_path)


def _ca_cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


def make_plugin_dir(d: Path) -> tuple[x509.Certificate, x509.Certificate, x509.Certificate]:
    """root -> intermediate -> ca-cert (the signing cert) in Istio's cacerts layout."""
    root_key, root = create_self_signed_root(key_type="ec-p256")
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter = _ca_cert("intermediate", inter_key, root, root_key)  # type: ignore[arg-type]
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _ca_cert("istiod-ca", ca_key, inter, inter_key)
    d.mkdir(parents=True, exist_ok=True)
    (d / "ca-cert.pem").write_text(cert_to_pem(ca_cert))
    (d / "ca-key.pem").write_bytes(key_to_pem(ca_key))
    (d / "root-cert.pem").write_text(cert_to_pem(root))
    (d / "cert-chain.pem").write_text(cert_to_pem(ca_cert) + cert_to_pem(inter) + cert_to_pem(root))
    return root, inter, ca_cert


def test_plugin_ca_chain(tmp_path: Path) -> None:
    root, inter, ca_cert = make_plugin_dir(tmp_path)
    bundle = load_ca_bundle(tmp_path)
    assert not bundle.self_signed
    chain = load_chain(CertificateAuthority(bundle).sign_csr(make_csr(), ID))
    assert chain[1:] == [ca_cert, inter, root]
    for child, parent in itertools.pairwise(chain):
        child.verify_directly_issued_by(parent)
    # Full path validation from the leaf to the root as a TLS client would do it.
    from cryptography.x509.verification import PolicyBuilder, Store

    verifier = PolicyBuilder().store(Store([root])).build_client_verifier()
    verified = verifier.verify(chain[0], chain[1:-1])
    assert [n.value for n in verified.subjects or []] == [URI]


def test_plugin_ca_without_cert_chain_file(tmp_path: Path) -> None:
    make_plugin_dir(tmp_path)
    (tmp_path / "cert-chain.pem").unlink()
    # ca-cert is issued by the intermediate, which only cert-chain.pem names: refuse, loudly.
    with pytest.raises(CAConfigError, match="is not issued by"):
        load_plugin_cacerts(tmp_path)


def test_plugin_ca_directly_under_root(tmp_path: Path) -> None:
    root_key, root = create_self_signed_root(key_type="ec-p256")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _ca_cert("istiod-ca", ca_key, root, root_key)  # type: ignore[arg-type]
    (tmp_path / "ca-cert.pem").write_text(cert_to_pem(ca_cert))
    (tmp_path / "ca-key.pem").write_bytes(key_to_pem(ca_key))
    (tmp_path / "root-cert.pem").write_text(cert_to_pem(root))
    chain = load_chain(CertificateAuthority(load_plugin_cacerts(tmp_path)).sign_csr(make_csr(), ID))
    assert chain[1:] == [ca_cert, root]
    chain[0].verify_directly_issued_by(ca_cert)


def test_plugin_ca_mismatched_key_refused(tmp_path: Path) -> None:
    make_plugin_dir(tmp_path)
    (tmp_path / "ca-key.pem").write_bytes(key_to_pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(CAConfigError, match="does not match"):
        load_plugin_cacerts(tmp_path)


def test_serving_cert(ca: CertificateAuthority) -> None:
    chain_pem, key_pem = ca.issue_serving_cert()
    certs = x509.load_pem_x509_certificates(chain_pem)
    san = certs[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["istiod.istio-system.svc", "localhost"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    key = serialization.load_pem_private_key(key_pem, None)
    assert key.public_key() == certs[0].public_key()
    certs[0].verify_directly_issued_by(ca.bundle.root_cert)
