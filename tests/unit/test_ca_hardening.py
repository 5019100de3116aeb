"""CA refusals and token-file rules from issue 9, through the CA as `serve` wires it
(ca/runtime.py `start_ca`) and a real grpc.aio client over TLS on 127.0.0.1."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from istiod_py.ca._proto import ca_pb2, ca_pb2_grpc
from istiod_py.ca.authn import parse_token_file
from istiod_py.ca.runtime import CARuntime, start_ca
from istiod_py.model import MeshConfig
from tests.unit.test_ca_grpc import free_port

URI = "spiffe://cluster.local/ns/default/sa/sleep"


def csr(uri: str | None = URI, ca: bool | None = None) -> str:
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if uri:
        b = b.add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), False)
    if ca is not None:
        b = b.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    key = ec.generate_private_key(ec.SECP256R1())
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class Running:
    runtime: CARuntime
    port: int
    tokens: Path

    async def create(self, csr_pem: str, token: str, validity: int = 3600) -> Any:
        creds = grpc.ssl_channel_credentials(root_certificates=self.runtime.ca.root_pem.encode())
        async with grpc.aio.secure_channel(
            f"127.0.0.1:{self.port}", creds, options=[("grpc.ssl_target_name_override", "istiod.istio-system.svc")]
        ) as ch:
            stub = ca_pb2_grpc.IstioCertificateServiceStub(ch)
            req = ca_pb2.IstioCertificateRequest(csr=csr_pem, validity_duration=validity)
            return await stub.CreateCertificate(req, metadata=[("authorization", f"Bearer {token}")], timeout=10)


TOKENS = """\
tokens:
  on: {namespace: default, serviceAccount: sleep}
  0777: {namespace: default, serviceAccount: sleep}
  t-sleep: {namespace: default, serviceAccount: sleep}
"""


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(TOKENS)
    rt = start_ca(MeshConfig(), ca_dir=str(tmp_path / "ca"), token_file=str(tokens))
    server = grpc.aio.server()
    rt.register(server)
    port = free_port()
    server.add_secure_port(f"127.0.0.1:{port}", rt.server_credentials())
    await server.start()
    try:
        yield Running(rt, port, tokens)
    finally:
        await server.stop(0)


async def test_csr_asking_for_ca_true_is_refused(running: Running) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await running.create(csr(ca=True), "t-sleep")
    assert ei.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "CA:TRUE" in (ei.value.details() or "")
    # The same CSR without the request, or with CA:FALSE, is signed: only CA:TRUE is refused.
    for ok in (csr(), csr(ca=False)):
        resp = await running.create(ok, "t-sleep")
        leaf = x509.load_pem_x509_certificate(resp.cert_chain[0].encode())
        assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


@pytest.mark.parametrize("validity", [2**63 - 1, 10**15, -(2**63)])
async def test_out_of_range_validity_is_invalid_argument(running: Running, validity: int) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await running.create(csr(), "t-sleep", validity=validity)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT, ei.value.details()
    assert str(validity) in (ei.value.details() or "")


async def test_token_keys_are_taken_as_written(running: Running) -> None:
    """`on:` is the token "on" (not "True") and `0777:` is "0777" (not "511")."""
    for token in ("on", "0777"):
        resp = await running.create(csr(), token)
        assert resp.cert_chain
    for coerced in ("True", "511"):
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await running.create(csr(), coerced)
        assert ei.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_token_file_list_layout_and_values_are_strings() -> None:
    ids = parse_token_file(
        "tokens:\n- {token: yes, namespace: 0755, serviceAccount: null}\n"
        "- {token: 1e3, namespace: a, serviceAccount: b}\n",
        "t.yaml",
    )
    assert set(ids) == {"yes", "1e3"}
    assert (ids["yes"].namespace, ids["yes"].service_account) == ("0755", "null")


def test_token_file_bad_yaml_names_the_file() -> None:
    with pytest.raises(ValueError, match=r"t\.yaml: not valid YAML"):
        parse_token_file("tokens: {a: [\n", "t.yaml")


async def test_deleted_token_file_revokes_its_tokens(running: Running) -> None:
    assert (await running.create(csr(), "t-sleep")).cert_chain
    running.tokens.unlink()
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await running.create(csr(), "t-sleep")
    assert ei.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # Writing the file again brings its tokens back.
    running.tokens.write_text("tokens:\n  t-sleep: {namespace: default, serviceAccount: sleep}\n")
    assert (await running.create(csr(), "t-sleep")).cert_chain


async def test_unparseable_token_file_keeps_last_good_table(running: Running) -> None:
    running.tokens.write_text("tokens: [oops\n")
    os.utime(running.tokens, ns=(1, 1))  # a different mtime even on coarse clocks
    assert (await running.create(csr(), "t-sleep")).cert_chain


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_ca_dir_created_owner_only_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        rt = start_ca(MeshConfig(), ca_dir=str(tmp_path / "nested" / "ca"))
    finally:
        os.umask(old)
    ca_dir = tmp_path / "nested" / "ca"
    assert stat.S_IMODE(ca_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((ca_dir / "root-key.pem").stat().st_mode) == 0o600
    assert rt.root_cert_path == ca_dir / "root-cert.pem"
