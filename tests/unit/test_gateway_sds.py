"""Gateway server certificates through SDS.

Translation: a router proxy with the agent's `sds-grpc` cluster (node metadata
`SDS: "true"`) gets SDS references named `file-cert:<cert>~<key>` and
`file-root:<ca>`; one without keeps file paths. The agent's SDS server answers
those names with the files' contents and pushes a new version when they change,
over a real unix socket with a real grpc.aio client."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc

from istiod_py.agent.certs import WorkloadCert
from istiod_py.agent.sds import FileSecrets, SDSServer, file_secret_paths
from istiod_py.model import Proxy, parse_proxy
from istiod_py.translate.gateway import credentials
from istiod_py.translate.security.mtls import SDS_CLUSTER
from istiod_py.xds.types import TypeUrl
from tests.unit.test_agent_sds import Stream, unpack
from tests.unit.test_gateway_translate import GW_IP, HOSTS, generate, state_of

# --- translation ------------------------------------------------------------------------------


def router(sds: bool, ip: str = GW_IP) -> Proxy:
    meta: dict[str, Any] = {"NAMESPACE": "istio-system", "LABELS": {"istio": "ingressgateway"}}
    meta["INTERCEPTION_MODE"] = "NONE"
    if sds:
        meta["SDS"] = "true"
    return parse_proxy(f"router~{ip}~gw-1.istio-system~istio-system.svc.cluster.local", meta)


def tls_contexts(proxy: Proxy) -> tuple[tls_pb2.DownstreamTlsContext, tls_pb2.DownstreamTlsContext]:
    lds = generate(state_of(HOSTS), proxy, TypeUrl.LISTENER)
    lst = lds[f"{GW_IP}_8443"]
    simple, mutual = tls_pb2.DownstreamTlsContext(), tls_pb2.DownstreamTlsContext()
    assert lst.filter_chains[0].transport_socket.typed_config.Unpack(simple)
    assert lst.filter_chains[1].transport_socket.typed_config.Unpack(mutual)
    return simple, mutual


def _is_sds_grpc(cfg: Any) -> bool:
    services = cfg.sds_config.api_config_source.grpc_services
    return [g.envoy_grpc.cluster_name for g in services] == [SDS_CLUSTER]


def test_sds_capable_router_gets_file_cert_and_file_root_secret_names() -> None:
    simple, mutual = tls_contexts(router(sds=True))
    common = simple.common_tls_context
    assert not common.tls_certificates  # no file paths for Envoy to read
    [cfg] = common.tls_certificate_sds_secret_configs
    assert cfg.name == "file-cert:/certs/a.pem~/certs/a.key"
    assert _is_sds_grpc(cfg)
    assert not common.HasField("combined_validation_context")
    assert list(common.alpn_protocols) == ["h2", "http/1.1"]

    mc = mutual.common_tls_context
    assert [c.name for c in mc.tls_certificate_sds_secret_configs] == ["file-cert:/certs/b.pem~/certs/b.key"]
    assert not mc.HasField("validation_context")
    combined = mc.combined_validation_context
    assert combined.validation_context_sds_secret_config.name == "file-root:/certs/ca.pem"
    assert _is_sds_grpc(combined.validation_context_sds_secret_config)
    assert mutual.require_client_certificate.value is True


def test_router_without_sds_keeps_file_paths() -> None:
    simple, mutual = tls_contexts(router(sds=False))
    common = simple.common_tls_context
    assert not common.tls_certificate_sds_secret_configs
    assert common.tls_certificates[0].certificate_chain.filename == "/certs/a.pem"
    assert common.tls_certificates[0].private_key.filename == "/certs/a.key"
    mc = mutual.common_tls_context
    assert not mc.HasField("combined_validation_context")
    assert mc.validation_context.trusted_ca.filename == "/certs/ca.pem"


def test_same_labels_different_sds_capability_are_not_shared() -> None:
    """The gateway listener memo must tell the two kinds of router apart."""
    from istiod_py.translate.generate import Translator

    st = state_of(HOSTS)
    tr = Translator()
    with_sds = tr.generate(st, router(sds=True), TypeUrl.LISTENER).index[f"{GW_IP}_8443"].message()
    without = tr.generate(st, router(sds=False), TypeUrl.LISTENER).index[f"{GW_IP}_8443"].message()
    ctx = tls_pb2.DownstreamTlsContext()
    with_sds.filter_chains[0].transport_socket.typed_config.Unpack(ctx)
    assert ctx.common_tls_context.tls_certificate_sds_secret_configs
    without.filter_chains[0].transport_socket.typed_config.Unpack(ctx)
    assert not ctx.common_tls_context.tls_certificate_sds_secret_configs


def test_mutual_checks_stay_inline_with_sds() -> None:
    from istio.networking.v1alpha3 import gateway_pb2

    tls = gateway_pb2.ServerTLSSettings(
        mode=gateway_pb2.ServerTLSSettings.MUTUAL,
        server_certificate="/c/s.pem",
        private_key="/c/s.key",
        ca_certificates="/c/ca.pem",
        ca_crl="/c/crl.pem",
        subject_alt_names=["client.example.com", "spiffe://td/ns/a/sa/b"],
        verify_certificate_hash=["ab:cd"],
    )
    ctx = credentials.downstream_tls_context(tls, sds=True)
    combined = ctx.common_tls_context.combined_validation_context
    assert combined.validation_context_sds_secret_config.name == credentials.file_root_secret_name("/c/ca.pem")
    vc = combined.default_validation_context
    assert vc.crl.filename == "/c/crl.pem"
    assert [m.matcher.exact for m in vc.match_typed_subject_alt_names] == [
        "client.example.com",
        "spiffe://td/ns/a/sa/b",
    ]
    assert list(vc.verify_certificate_hash) == ["ab:cd"]
    assert not vc.HasField("trusted_ca")


def test_secret_name_parsing_matches_translation() -> None:
    name = credentials.file_cert_secret_name("/a/cert.pem", "/a/key.pem")
    assert file_secret_paths(name) == (Path("/a/cert.pem"), Path("/a/key.pem"))
    assert file_secret_paths(credentials.file_root_secret_name("/a/ca.pem")) == (Path("/a/ca.pem"),)
    assert file_secret_paths("file-cert:/only-one") is None
    assert file_secret_paths("file-cert:/a~/b~/c") is None
    assert file_secret_paths("file-root:") is None
    assert file_secret_paths("default") is None


# --- certificates on disk ---------------------------------------------------------------------


def _self_signed(cn: str, ca: bool = False) -> tuple[bytes, bytes, int]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem, cert.serial_number


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class Files:
    def __init__(self, root: Path) -> None:
        self.cert, self.key, self.ca = root / "gw.pem", root / "gw.key", root / "ca.pem"

    def write_pair(self, cn: str = "gw.example.com") -> tuple[bytes, bytes, int]:
        cert, key, serial = _self_signed(cn)
        _replace(self.cert, cert)
        _replace(self.key, key)
        return cert, key, serial

    @property
    def cert_name(self) -> str:
        return credentials.file_cert_secret_name(str(self.cert), str(self.key))

    @property
    def root_name(self) -> str:
        return credentials.file_root_secret_name(str(self.ca))


class NoCert:
    """A certificate source that never has a workload certificate: file secrets do not need one."""

    current: WorkloadCert | None = None

    def subscribe(self, listener: Callable[[WorkloadCert], None]) -> Callable[[], None]:
        return lambda: None


@pytest.fixture
async def sds(tmp_path: Path) -> AsyncIterator[tuple[Any, SDSServer, Files]]:
    server = SDSServer(NoCert(), file_poll_interval=0.1)
    sock = tmp_path / "sds.sock"
    await server.start(sock)
    channel = grpc.aio.insecure_channel(f"unix:{sock}")
    try:
        yield sds_pb2_grpc.SecretDiscoveryServiceStub(channel), server, Files(tmp_path)
    finally:
        await channel.close()
        await server.stop(0)


async def _ack(st: Stream, names: list[str], r: Any) -> None:
    await st.send(
        msg=discovery_pb2.DiscoveryRequest, resource_names=names, version_info=r.version_info, response_nonce=r.nonce
    )


async def test_sotw_serves_file_cert_and_pushes_new_version_when_files_change(sds: Any) -> None:
    stub, server, files = sds
    cert1, key1, _ = files.write_pair()
    st = Stream(stub.StreamSecrets)
    await st.send(msg=discovery_pb2.DiscoveryRequest, resource_names=[files.cert_name])
    r1 = await st.recv()
    s1 = unpack(r1)[files.cert_name]
    assert s1.tls_certificate.certificate_chain.inline_bytes == cert1
    assert s1.tls_certificate.private_key.inline_bytes == key1
    assert r1.version_info
    await _ack(st, [files.cert_name], r1)
    await st.expect_silence(0.4)  # polling unchanged files sends nothing
    assert server.file_secrets.watched == [files.cert_name]

    cert2, key2, _ = files.write_pair()
    r2 = await st.recv()
    s2 = unpack(r2)[files.cert_name]
    assert s2.tls_certificate.certificate_chain.inline_bytes == cert2
    assert s2.tls_certificate.private_key.inline_bytes == key2
    assert r2.version_info != r1.version_info and r2.nonce != r1.nonce
    await _ack(st, [files.cert_name], r2)
    await st.expect_silence(0.3)
    await st.q.put(None)


async def test_file_root_served_and_reloaded(sds: Any) -> None:
    stub, _, files = sds
    ca1, _, _ = _self_signed("ca-1", ca=True)
    _replace(files.ca, ca1)
    st = Stream(stub.StreamSecrets)
    await st.send(msg=discovery_pb2.DiscoveryRequest, resource_names=[files.root_name])
    r1 = await st.recv()
    assert unpack(r1)[files.root_name].validation_context.trusted_ca.inline_bytes == ca1
    await _ack(st, [files.root_name], r1)
    ca2, _, _ = _self_signed("ca-2", ca=True)
    _replace(files.ca, ca1 + ca2)  # a bundle of two roots
    r2 = await st.recv()
    assert unpack(r2)[files.root_name].validation_context.trusted_ca.inline_bytes == ca1 + ca2
    await st.q.put(None)


async def test_missing_files_send_nothing_until_they_appear(sds: Any) -> None:
    stub, _, files = sds
    st = Stream(stub.StreamSecrets)
    await st.send(msg=discovery_pb2.DiscoveryRequest, resource_names=[files.cert_name])
    await st.expect_silence(0.4)  # no broken or empty secret: Envoy keeps warming
    cert, _, _ = files.write_pair()
    r = await st.recv()
    assert unpack(r)[files.cert_name].tls_certificate.certificate_chain.inline_bytes == cert
    await st.q.put(None)


async def test_broken_files_keep_the_last_good_secret(sds: Any) -> None:
    stub, _, files = sds
    cert1, key1, _ = files.write_pair()
    st = Stream(stub.StreamSecrets)
    await st.send(msg=discovery_pb2.DiscoveryRequest, resource_names=[files.cert_name])
    r1 = await st.recv()
    await _ack(st, [files.cert_name], r1)
    # Half a rotation: a new certificate with the old key does not match; not sent.
    cert2, key2, _ = _self_signed("gw.example.com")
    _replace(files.cert, cert2)
    await st.expect_silence(0.4)
    # Garbage, then a missing key file: still nothing sent.
    _replace(files.cert, b"not a certificate")
    await st.expect_silence(0.3)
    files.key.unlink()
    await st.expect_silence(0.3)
    # A new stream still gets the last good pair.
    st2 = Stream(stub.StreamSecrets)
    await st2.send(msg=discovery_pb2.DiscoveryRequest, resource_names=[files.cert_name])
    got = unpack(await st2.recv())[files.cert_name]
    assert got.tls_certificate.certificate_chain.inline_bytes == cert1
    assert got.tls_certificate.private_key.inline_bytes == key1
    # The rotation completes: the new pair is pushed.
    _replace(files.cert, cert2)
    _replace(files.key, key2)
    r2 = await st.recv()
    assert unpack(r2)[files.cert_name].tls_certificate.certificate_chain.inline_bytes == cert2
    await st.q.put(None)
    await st2.q.put(None)


async def test_delta_and_fetch_serve_file_secrets(sds: Any) -> None:
    stub, _, files = sds
    cert1, _, _ = files.write_pair()
    ca, _, _ = _self_signed("ca", ca=True)
    _replace(files.ca, ca)
    st = Stream(stub.DeltaSecrets)
    await st.send(msg=discovery_pb2.DeltaDiscoveryRequest, resource_names_subscribe=[files.cert_name, files.root_name])
    r = await st.recv()
    assert sorted(x.name for x in r.resources) == sorted([files.cert_name, files.root_name])
    await st.send(msg=discovery_pb2.DeltaDiscoveryRequest, response_nonce=r.nonce)
    cert2, _, _ = files.write_pair()
    r2 = await st.recv()
    assert [x.name for x in r2.resources] == [files.cert_name]  # the root did not change
    await st.q.put(None)

    f = await stub.FetchSecrets(discovery_pb2.DiscoveryRequest(resource_names=[files.cert_name]))
    assert unpack(f)[files.cert_name].tls_certificate.certificate_chain.inline_bytes == cert2
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await stub.FetchSecrets(discovery_pb2.DiscoveryRequest(resource_names=["file-root:/no/such/ca.pem"]))
    assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
    assert cert1 != cert2


async def test_unsubscribed_files_are_no_longer_watched(sds: Any) -> None:
    stub, server, files = sds
    files.write_pair()
    st = Stream(stub.StreamSecrets)
    await st.send(msg=discovery_pb2.DiscoveryRequest, resource_names=[files.cert_name])
    await st.recv()
    assert server.file_secrets.watched == [files.cert_name]
    await st.q.put(None)  # the stream ends
    for _ in range(50):
        if not server.file_secrets.watched:
            break
        await asyncio.sleep(0.05)
    assert server.file_secrets.watched == []


def test_file_secrets_poll_reports_changes(tmp_path: Path) -> None:
    changes: list[int] = []
    fs = FileSecrets(lambda: changes.append(1))
    files = Files(tmp_path)
    assert fs.get(files.cert_name) is None  # nothing yet
    assert not fs.poll()
    files.write_pair()
    assert fs.poll() and changes == [1]
    first = fs.get(files.cert_name)
    assert first is not None
    assert not fs.poll()  # unchanged
    # Rewriting identical bytes is not a change of content.
    _replace(files.cert, files.cert.read_bytes())
    assert not fs.poll()
    files.write_pair()
    assert fs.poll() and changes == [1, 1]
    assert fs.get(files.cert_name) != first
