"""The CA gRPC service over real TLS on 127.0.0.1 with a real grpc.aio client."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client import CollectorRegistry, generate_latest

from istiod_py.ca import (
    CAMetrics,
    CertificateAuthority,
    ChainAuthenticator,
    ClientCertAuthenticator,
    Identity,
    TokenFileAuthenticator,
    add_ca_service,
    load_or_create_root,
    server_credentials,
)
from istiod_py.ca._proto import ca_pb2, ca_pb2_grpc
from istiod_py.ca.keys import key_to_pem

URI = "spiffe://cluster.local/ns/default/sa/sleep"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def csr_pem(key: ec.EllipticCurvePrivateKey, uri: str | None = URI) -> str:
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if uri:
        b = b.add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), False)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


class CAServer:
    def __init__(self, ca: CertificateAuthority, metrics: CAMetrics, registry: CollectorRegistry, port: int):
        self.ca, self.metrics, self.registry, self.port = ca, metrics, registry, port

    def channel(self, client_key: bytes | None = None, client_chain: bytes | None = None) -> Any:
        creds = grpc.ssl_channel_credentials(
            root_certificates=self.ca.root_pem.encode(),
            private_key=client_key,
            certificate_chain=client_chain,
        )
        return grpc.aio.secure_channel(f"127.0.0.1:{self.port}", creds)


async def _serve(tmp_path: Path, require_client_cert: bool) -> AsyncIterator[CAServer]:
    ca = CertificateAuthority(load_or_create_root(tmp_path / "ca"))
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("tokens:\n  t-sleep: {namespace: default, serviceAccount: sleep}\n")
    authn = ChainAuthenticator([TokenFileAuthenticator(tokens), ClientCertAuthenticator([ca.bundle.root_cert])])
    registry = CollectorRegistry()
    metrics = CAMetrics(registry)
    server = grpc.aio.server()
    add_ca_service(server, ca, authn, metrics)
    port = free_port()
    server.add_secure_port(f"127.0.0.1:{port}", server_credentials(ca, require_client_cert=require_client_cert))
    await server.start()
    try:
        yield CAServer(ca, metrics, registry, port)
    finally:
        await server.stop(0)


@pytest.fixture
async def ca_server(tmp_path: Path) -> AsyncIterator[CAServer]:
    async for s in _serve(tmp_path, require_client_cert=False):
        yield s


@pytest.fixture
async def mtls_ca_server(tmp_path: Path) -> AsyncIterator[CAServer]:
    # grpc's Python API cannot *optionally* request client certs: either required or not asked for.
    # So cert-based renewal needs a port that requires client certs (see server_credentials).
    async for s in _serve(tmp_path, require_client_cert=True):
        yield s


async def call(channel: Any, csr: str, token: str | None, validity: int = 3600) -> Any:
    stub = ca_pb2_grpc.IstioCertificateServiceStub(channel)
    md = [("authorization", f"Bearer {token}")] if token else []
    req = ca_pb2.IstioCertificateRequest(csr=csr, validity_duration=validity)
    return await stub.CreateCertificate(req, metadata=md, timeout=10)


async def test_success(ca_server: CAServer) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    async with ca_server.channel() as ch:
        resp = await call(ch, csr_pem(key), "t-sleep")
    chain = [x509.load_pem_x509_certificate(p.encode()) for p in resp.cert_chain]
    assert chain[-1] == ca_server.ca.bundle.root_cert
    chain[0].verify_directly_issued_by(chain[-1])
    san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [URI]
    assert ca_server.metrics.value("citadel_server_success_cert_issuance_count") == 1
    text = generate_latest(ca_server.registry).decode()
    assert "citadel_server_csr_count 1.0" in text
    assert "citadel_server_root_cert_expiry_timestamp" in text


async def test_no_token_unauthenticated(ca_server: CAServer) -> None:
    async with ca_server.channel() as ch:
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await call(ch, csr_pem(ec.generate_private_key(ec.SECP256R1())), None)
    assert ei.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "authorization" in (ei.value.details() or "")
    assert ca_server.metrics.value("citadel_server_authentication_failure_count") == 1


async def test_unknown_token_unauthenticated(ca_server: CAServer) -> None:
    async with ca_server.channel() as ch:
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await call(ch, csr_pem(ec.generate_private_key(ec.SECP256R1())), "nope")
    assert ei.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_wrong_identity_permission_denied(ca_server: CAServer) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    async with ca_server.channel() as ch:
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await call(ch, csr_pem(key, "spiffe://cluster.local/ns/istio-system/sa/istiod"), "t-sleep")
    assert ei.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert ca_server.metrics.value("citadel_server_id_extraction_err_count") == 1


async def test_bad_csr_and_validity_invalid_argument(ca_server: CAServer) -> None:
    async with ca_server.channel() as ch:
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await call(ch, "garbage", "t-sleep")
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await call(ch, csr_pem(ec.generate_private_key(ec.SECP256R1())), "t-sleep", validity=-1)
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ca_server.metrics.value("citadel_server_csr_parsing_err_count") == 1


async def test_renewal_with_client_cert_and_no_token(mtls_ca_server: CAServer) -> None:
    srv = mtls_ca_server
    key = ec.generate_private_key(ec.SECP256R1())
    first = srv.ca.sign_csr(csr_pem(key), Identity("default", "sleep"))
    chain = "".join(first[:-1]).encode()
    key2 = ec.generate_private_key(ec.SECP256R1())
    async with srv.channel(key_to_pem(key), chain) as ch:
        second = await call(ch, csr_pem(key2), None)
        # The certificate identity binds the renewal: another identity is refused.
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await call(ch, csr_pem(key2, "spiffe://cluster.local/ns/default/sa/other"), None)
    assert ei.value.code() == grpc.StatusCode.PERMISSION_DENIED
    leaf = x509.load_pem_x509_certificate(second.cert_chain[0].encode())
    assert leaf.public_key() == key2.public_key()
