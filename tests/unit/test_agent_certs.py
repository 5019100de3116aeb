"""Workload certificate manager against the real CA gRPC service over TLS."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from istiod_py.agent.certs import CertificateFetchError, WorkloadCert, WorkloadCertManager
from istiod_py.ca import (
    CAMetrics,
    CertificateAuthority,
    Identity,
    TokenFileAuthenticator,
    add_ca_service,
    load_or_create_root,
    server_credentials,
)

ID = Identity("default", "sleep")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Env:
    ca: CertificateAuthority
    address: str
    root_path: Path
    tmp: Path
    port: int


async def start_ca(ca: CertificateAuthority, tmp: Path, port: int) -> grpc.aio.Server:
    tokens = tmp / "tokens.yaml"
    tokens.write_text("tokens:\n  t-sleep: {namespace: default, serviceAccount: sleep}\n")
    server = grpc.aio.server()
    add_ca_service(server, ca, TokenFileAuthenticator(tokens), CAMetrics(registry=None))
    server.add_secure_port(f"127.0.0.1:{port}", server_credentials(ca))
    await server.start()
    return server


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    ca = CertificateAuthority(load_or_create_root(tmp_path / "ca"))
    port = free_port()
    server = await start_ca(ca, tmp_path, port)
    root = tmp_path / "root-cert.pem"
    root.write_text(ca.root_pem)
    try:
        yield Env(ca, f"127.0.0.1:{port}", root, tmp_path, port)
    finally:
        await server.stop(0)


def manager(env: Env, **kw: object) -> WorkloadCertManager:
    return WorkloadCertManager(env.address, env.root_path, ID, token="t-sleep", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("key_type", ["ec-p256", "rsa-2048"])
async def test_fetch_installs_cert(env: Env, key_type: str) -> None:
    m = manager(env, key_type=key_type)
    seen: list[WorkloadCert] = []
    m.subscribe(seen.append)
    cert = await m.start()
    await m.stop()
    assert seen == [cert] and m.current is cert
    leaf = x509.load_pem_x509_certificates(cert.cert_chain_pem)[0]
    key = serialization.load_pem_private_key(cert.private_key_pem, None)
    assert leaf.public_key() == key.public_key()
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://cluster.local/ns/default/sa/sleep"]
    assert abs((cert.not_after - dt.datetime.now(dt.UTC)) - dt.timedelta(hours=24)) < dt.timedelta(minutes=1)
    assert cert.root_pem.decode() == env.ca.root_pem


async def test_token_file_is_reread(env: Env) -> None:
    tok = env.tmp / "token"
    tok.write_text("t-sleep\n")
    m = WorkloadCertManager(env.address, env.root_path, ID, token_path=tok)
    assert (await m.fetch()).spiffe_uri.endswith("/sa/sleep")
    tok.write_text("revoked")
    with pytest.raises(CertificateFetchError, match="UNAUTHENTICATED"):
        await m.fetch()


async def test_wrong_root_refuses_ca(env: Env) -> None:
    other = CertificateAuthority(load_or_create_root(env.tmp / "other"))
    bad_root = env.tmp / "bad-root.pem"
    bad_root.write_text(other.root_pem)
    m = WorkloadCertManager(env.address, bad_root, ID, token="t-sleep", call_timeout=3)
    with pytest.raises(CertificateFetchError, match="UNAVAILABLE"):
        await m.fetch()


async def test_rotates_at_fraction_of_lifetime(env: Env) -> None:
    m = manager(env, ttl=dt.timedelta(seconds=2), rotation_fraction=0.5)
    seen: list[WorkloadCert] = []
    m.subscribe(seen.append)
    await m.start()
    try:
        await asyncio.sleep(2.6)  # ~1s per rotation
    finally:
        await m.stop()
    assert 2 <= len(seen) <= 4, [c.version for c in seen]
    assert len({c.serial for c in seen}) == len(seen)
    assert len({c.private_key_pem for c in seen}) == len(seen)  # a new key each time


async def test_rotate_now(env: Env) -> None:
    m = manager(env)
    first = await m.start()
    try:
        second = await m.rotate_now()
    finally:
        await m.stop()
    assert second.serial != first.serial and m.current is second


async def test_start_retries_until_ca_is_up(tmp_path: Path) -> None:
    ca = CertificateAuthority(load_or_create_root(tmp_path / "ca"))
    root = tmp_path / "root-cert.pem"
    root.write_text(ca.root_pem)
    port = free_port()
    m = WorkloadCertManager(
        f"127.0.0.1:{port}", root, ID, token="t-sleep", backoff_initial=0.1, backoff_max=0.3, call_timeout=1
    )
    start = asyncio.create_task(m.start())
    await asyncio.sleep(0.5)
    assert not start.done()
    server = await start_ca(ca, tmp_path, port)
    try:
        cert = await asyncio.wait_for(start, 10)
        assert cert.spiffe_uri.endswith("/ns/default/sa/sleep")
    finally:
        await m.stop()
        await server.stop(0)


def test_bad_rotation_fraction(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rotation_fraction"):
        WorkloadCertManager("x:1", tmp_path / "r", ID, rotation_fraction=1.5)
