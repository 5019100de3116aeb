"""SDS protocol over a real unix socket with a real grpc.aio client: SotW, ACK/NACK, push, delta."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc
from google.rpc import status_pb2

from istiod_py.agent.certs import WorkloadCert
from istiod_py.agent.sds import SECRET_TYPE_URL, SDSServer
from istiod_py.ca import CertificateAuthority, Identity, load_or_create_root
from istiod_py.ca.keys import key_to_pem


class FakeSource:
    def __init__(self) -> None:
        self.current: WorkloadCert | None = None
        self._listeners: list[Callable[[WorkloadCert], None]] = []

    def subscribe(self, listener: Callable[[WorkloadCert], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def publish(self, cert: WorkloadCert) -> None:
        self.current = cert
        for li in self._listeners:
            li(cert)


def issue(ca: CertificateAuthority) -> WorkloadCert:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
    chain = ca.sign_csr(csr.public_bytes(serialization.Encoding.PEM), Identity("default", "sleep"))
    leaf = x509.load_pem_x509_certificate(chain[0].encode())
    return WorkloadCert(
        cert_chain_pem="".join(chain[:-1]).encode(),
        private_key_pem=key_to_pem(key),
        root_pem=chain[-1].encode(),
        serial=leaf.serial_number,
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        spiffe_uri="spiffe://cluster.local/ns/default/sa/sleep",
        received_at=dt.datetime.now(dt.UTC),
    )


class Stream:
    """A bidi client stream fed from a queue."""

    def __init__(self, method: Any) -> None:
        self.q: asyncio.Queue[Any] = asyncio.Queue()
        self._pending: asyncio.Task[Any] | None = None
        self.call = method(self._requests())

    async def _requests(self) -> AsyncIterator[Any]:
        while (r := await self.q.get()) is not None:
            yield r

    async def send(self, **kw: Any) -> None:
        await self.q.put(kw.pop("msg")(type_url=SECRET_TYPE_URL, **kw))

    def _read(self) -> asyncio.Task[Any]:
        # One read in flight at a time: a read that timed out stays pending and gets the next message.
        if self._pending is None:
            self._pending = asyncio.ensure_future(self.call.read())
        return self._pending

    async def recv(self, timeout: float = 3) -> Any:
        msg = await asyncio.wait_for(asyncio.shield(self._read()), timeout)
        self._pending = None
        return msg

    async def expect_silence(self, timeout: float = 0.3) -> None:
        done, _ = await asyncio.wait({self._read()}, timeout=timeout)
        assert not done, "unexpected response"


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[FakeSource, Any, CertificateAuthority, SDSServer]]:
    ca = CertificateAuthority(load_or_create_root(tmp_path / "ca", key_type="ec-p256"))
    src = FakeSource()
    sds = SDSServer(src)
    sock = tmp_path / "sds.sock"
    await sds.start(sock)
    assert (sock.stat().st_mode & 0o777) == 0o600
    channel = grpc.aio.insecure_channel(f"unix:{sock}")
    try:
        yield src, sds_pb2_grpc.SecretDiscoveryServiceStub(channel), ca, sds
    finally:
        await channel.close()
        await sds.stop(0)


def unpack(resp: Any) -> dict[str, Any]:
    out = {}
    for a in resp.resources:
        s = secret_pb2.Secret()
        a.Unpack(s)
        out[s.name] = s
    return out


async def test_sotw_waits_for_cert_then_serves_and_pushes(env: Any) -> None:
    src, stub, ca, sds = env
    st = Stream(stub.StreamSecrets)
    await st.send(msg=discovery_pb2.DiscoveryRequest, resource_names=["default"])
    # No certificate yet: Envoy's listener warms until we have one; we must not answer empty.
    await asyncio.sleep(0.2)
    c1 = issue(ca)
    src.publish(c1)
    r1 = await st.recv()
    secrets = unpack(r1)
    assert list(secrets) == ["default"]
    assert secrets["default"].tls_certificate.certificate_chain.inline_bytes == c1.cert_chain_pem
    assert secrets["default"].tls_certificate.private_key.inline_bytes == c1.private_key_pem
    assert r1.version_info == c1.version and r1.nonce

    await st.send(
        msg=discovery_pb2.DiscoveryRequest,
        resource_names=["default"],
        version_info=r1.version_info,
        response_nonce=r1.nonce,
    )
    await st.expect_silence()
    assert sds.stream_status()[0]["acked_version"] == c1.version

    c2 = issue(ca)
    src.publish(c2)
    r2 = await st.recv()
    assert r2.version_info == c2.version and r2.nonce != r1.nonce
    assert unpack(r2)["default"].tls_certificate.certificate_chain.inline_bytes == c2.cert_chain_pem
    await st.q.put(None)


async def test_rootca_stream_not_pushed_on_leaf_rotation(env: Any) -> None:
    src, stub, ca, _ = env
    src.publish(issue(ca))
    st = Stream(stub.StreamSecrets)
    await st.send(msg=discovery_pb2.DiscoveryRequest, resource_names=["ROOTCA"])
    r = await st.recv()
    root = unpack(r)["ROOTCA"]
    assert root.validation_context.trusted_ca.inline_bytes.decode() == ca.root_pem
    await st.send(
        msg=discovery_pb2.DiscoveryRequest,
        resource_names=["ROOTCA"],
        version_info=r.version_info,
        response_nonce=r.nonce,
    )
    src.publish(issue(ca))  # same root: nothing to send
    await st.expect_silence()
    await st.q.put(None)


async def test_nack_is_recorded_and_not_resent(env: Any) -> None:
    src, stub, ca, sds = env
    src.publish(issue(ca))
    st = Stream(stub.StreamSecrets)
    await st.send(msg=discovery_pb2.DiscoveryRequest, resource_names=["default"])
    r = await st.recv()
    await st.send(
        msg=discovery_pb2.DiscoveryRequest,
        resource_names=["default"],
        response_nonce=r.nonce,
        error_detail=status_pb2.Status(code=3, message="bad key"),
    )
    await st.expect_silence()
    assert sds.stream_status()[0]["last_nack"] == "bad key"
    # A stale nonce is ignored, even if it carries an error.
    await st.send(
        msg=discovery_pb2.DiscoveryRequest,
        resource_names=["default"],
        response_nonce="stale",
        error_detail=status_pb2.Status(code=3, message="old"),
    )
    await st.expect_silence()
    assert sds.stream_status()[0]["last_nack"] == "bad key"
    await st.q.put(None)


async def test_delta(env: Any) -> None:
    src, stub, ca, _ = env
    c1 = issue(ca)
    src.publish(c1)
    st = Stream(stub.DeltaSecrets)
    await st.send(msg=discovery_pb2.DeltaDiscoveryRequest, resource_names_subscribe=["default", "ROOTCA"])
    r = await st.recv()
    assert sorted(x.name for x in r.resources) == ["ROOTCA", "default"]
    await st.send(msg=discovery_pb2.DeltaDiscoveryRequest, response_nonce=r.nonce)
    c2 = issue(ca)
    src.publish(c2)
    r2 = await st.recv()
    assert [x.name for x in r2.resources] == ["default"]  # the root did not change
    assert r2.system_version_info == c2.version
    await st.q.put(None)


async def test_fetch_secrets(env: Any) -> None:
    src, stub, ca, _ = env
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await stub.FetchSecrets(discovery_pb2.DiscoveryRequest(resource_names=["default"]))
    assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
    src.publish(issue(ca))
    r = await stub.FetchSecrets(discovery_pb2.DiscoveryRequest(resource_names=["default", "ROOTCA"]))
    assert sorted(unpack(r)) == ["ROOTCA", "default"]
