"""Gateway server certificates over SDS, end to end: the control plane with its CA,
an ingress gateway run by `istiod-py agent --type router` (real Envoy), a
certificate made by the test on disk. The gateway terminates HTTPS with it; the
test then rewrites the certificate and key files with a new certificate and,
with no config change, the gateway serves the new one within seconds while
requests keep succeeding."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.e2e.test_gateway import CA, Pem, https_get, service, vs
from tests.support.envoy import EnvoyFactory
from tests.support.mesh import Mesh
from tests.support.net import allocate_ip
from tests.support.upstreams import UpstreamFactory

pytestmark = pytest.mark.e2e

HOST = "gw.example.com"
PORT = 8443
MTLS_HOST = "mtls.example.com"
MTLS_PORT = 9443


def gateway(served: Pem, mtls: Pem, ca: Path) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {PORT}, name: https, protocol: HTTPS}}
    hosts: [{HOST}]
    tls: {{mode: SIMPLE, serverCertificate: {served.cert}, privateKey: {served.key}}}
  - port: {{number: {MTLS_PORT}, name: https-mtls, protocol: HTTPS}}
    hosts: [{MTLS_HOST}]
    tls: {{mode: MUTUAL, serverCertificate: {mtls.cert}, privateKey: {mtls.key}, caCertificates: {ca}}}
---
"""


def install(src: Pem, dst: Pem) -> None:
    """Put a certificate and key in place, each file replaced atomically (as a
    secret mount or cert-manager would), the pair one after the other."""
    for a, b in ((src.key, dst.key), (src.cert, dst.cert)):
        tmp = b.with_name(b.name + ".tmp")
        shutil.copyfile(a, tmp)
        os.replace(tmp, b)


def serial_of(pem: Pem) -> int:
    return x509.load_pem_x509_certificate(pem.cert.read_bytes()).serial_number


def https_serial(ip: str, ca: Path, timeout: float = 3.0) -> tuple[int, int, str]:
    """One request on a new connection (so a new handshake), the server verified
    against `ca` for HOST: (HTTP status, served certificate serial, upstream name)."""
    ctx = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection((ip, PORT), timeout=timeout) as raw,
        ctx.wrap_socket(raw, server_hostname=HOST) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        serial = x509.load_der_x509_certificate(der).serial_number
        tls.sendall(f"GET /hello HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, serial, body.decode(errors="replace")


def tls_context_of(gw: Any, listener: str) -> dict[str, Any]:
    for cfg in gw.config_dump(resource="dynamic_listeners").get("configs", []):
        if cfg.get("name") != listener:
            continue
        chain = cfg["active_state"]["listener"]["filter_chains"][0]
        ctx: dict[str, Any] = chain["transport_socket"]["typed_config"]
        return ctx
    raise AssertionError(f"listener {listener} not in the config dump")


def active_secrets(gw: Any) -> dict[str, str]:
    """Envoy's dynamic active secrets: name -> version_info."""
    return {s["name"]: s.get("version_info", "") for s in gw.dynamic_resources("SecretsConfigDump")}


def test_gateway_file_certificate_over_sds_rotates_without_config_change(
    tmp_path: Path, envoy_factory: EnvoyFactory, upstreams: UpstreamFactory
) -> None:
    ca = CA(tmp_path / "certs")
    first, second = ca.issue("gw-1", [HOST]), ca.issue("gw-2", [HOST])
    assert serial_of(first) != serial_of(second)
    served_dir = tmp_path / "served"
    served_dir.mkdir()
    served = Pem(served_dir / "tls.crt", served_dir / "tls.key")
    install(first, served)

    backend = upstreams.http("backend")
    mesh = Mesh(tmp_path, envoy_factory)
    mesh.write("svc.yaml", service("backend", 9080, backend.host, backend.port))
    mtls, client = ca.issue("mtls", [MTLS_HOST]), ca.issue("client", ["client.example.com"], client=True)
    mesh.write(
        "gw.yaml", gateway(served, mtls, ca.pem.cert) + vs("gw", HOST, "backend") + vs("m", MTLS_HOST, "backend")
    )
    mesh.start_with_ca()
    try:
        ip = allocate_ip()
        gw = mesh.agent_sidecar(
            "ingressgateway",
            ip=ip,
            namespace="istio-system",
            labels={"istio": "ingressgateway"},
            proxy_type="router",
        )
        listener = f"{ip}_{PORT}"
        mesh.wait_listener(gw, listener, 15)
        mesh.wait(lambda: https_serial(ip, ca.pem.cert)[0] == 200, 15, "HTTPS through the gateway")
        mesh.wait_synced()

        # The gateway got the certificate by SDS name from its agent, not as file paths.
        secret_name = f"file-cert:{served.cert}~{served.key}"
        common = tls_context_of(gw, listener)["common_tls_context"]
        assert [c["name"] for c in common["tls_certificate_sds_secret_configs"]] == [secret_name]
        assert "tls_certificates" not in common
        versions = active_secrets(gw)
        assert secret_name in versions, versions
        status, serial, body = https_serial(ip, ca.pem.cert)
        assert (status, serial) == (200, serial_of(first))
        assert '"server": "backend"' in body or '"server":"backend"' in body, body[:300]

        # MUTUAL: the client CA comes from SDS too (`file-root:`), with a client certificate required.
        mesh.wait_listener(gw, f"{ip}_{MTLS_PORT}", 15)
        mctx = tls_context_of(gw, f"{ip}_{MTLS_PORT}")["common_tls_context"]
        root_cfg = mctx["combined_validation_context"]["validation_context_sds_secret_config"]
        assert root_cfg["name"] == f"file-root:{ca.pem.cert}"
        r = https_get(ip, MTLS_PORT, MTLS_HOST, "/m", ca.pem.cert, client)
        assert r.status == 200 and r.peer_cn == MTLS_HOST
        with pytest.raises((ssl.SSLError, OSError)):
            https_get(ip, MTLS_PORT, MTLS_HOST, "/m", ca.pem.cert)

        lds_before = gw.stat("listener_manager.lds.update_success")
        modified_before = gw.stat("listener_manager.listener_modified")

        # Steady traffic, one handshake per request; rotate the files part-way through.
        failures: list[str] = []
        seen: list[tuple[float, int]] = []
        rotated_at = switched_at = 0.0
        start = time.monotonic()
        while True:
            now = time.monotonic()
            if not rotated_at and now - start > 1.0:
                install(second, served)
                rotated_at = time.monotonic()
            try:
                status, serial, body = https_serial(ip, ca.pem.cert)
                if status != 200:
                    failures.append(f"status {status}: {body[:200]}")
                seen.append((now, serial))
                if serial == serial_of(second) and not switched_at:
                    switched_at = now
            except (OSError, ssl.SSLError, ValueError) as e:
                failures.append(repr(e))
            if switched_at and now - switched_at > 1.0:
                break  # a second of traffic on the new certificate
            if rotated_at and now - rotated_at > 10:
                break
            time.sleep(0.01)

        assert not failures, f"{len(failures)} of {len(seen) + len(failures)} requests failed: {failures[:5]}"
        assert switched_at, f"the gateway still served serial {seen[-1][1]:x} 10 s after the files changed"
        assert switched_at - rotated_at < 5, f"new certificate served after {switched_at - rotated_at:.1f}s"
        # Once the new certificate is served, every new handshake gets it.
        after = {s for t, s in seen if t >= switched_at}
        assert after == {serial_of(second)}, after
        assert len(seen) > 20

        # No config change: no LDS update, no listener drain; only the secret has a new version.
        assert gw.stat("listener_manager.lds.update_success") == lds_before
        assert gw.stat("listener_manager.listener_modified") == modified_before
        assert active_secrets(gw)[secret_name] != versions[secret_name]
        assert "reloaded " + secret_name in gw.log_path.read_text(errors="replace")
        assert gw.is_running()
    finally:
        mesh.stop()
