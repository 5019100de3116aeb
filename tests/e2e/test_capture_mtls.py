"""Mutual TLS between captured sidecars: pods as network namespaces with real
iptables capture, each sidecar run by `istiod-py agent` as UID 1337 (workload
certificate from the control plane's CA, SDS, Envoy). The server's
PeerAuthentication is STRICT: a sidecar's call arrives over mTLS (the app sees
the caller's SPIFFE identity in X-Forwarded-Client-Cert), while a plaintext
call from a pod without a sidecar is refused by virtualInbound."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from istiod_py.inject.iptables import from_annotations
from tests.support.capture_pods import (
    ADMIN_PORT,
    HTTP_GET,
    PodAgent,
    client_server_agents,
    start_app,
    start_captured,
    wait_http_200,
)
from tests.support.configs import docs, service, workload_entry
from tests.support.envoy import EnvoyFactory
from tests.support.mesh import Mesh
from tests.support.netns import NetnsLab, netns_lab

PORT = 9080

STRICT = """apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: server-strict, namespace: default}
spec:
  selector: {matchLabels: {app: server}}
  mtls: {mode: STRICT}"""


@pytest.fixture
def lab() -> Iterator[NetnsLab]:
    with netns_lab() as lab:
        yield lab


def test_strict_mtls_between_captured_sidecars(
    lab: NetnsLab, tmp_path: Path, envoy_factory: EnvoyFactory, envoy_bin: str
) -> None:
    client, server, legacy = lab.pod("client"), lab.pod("server"), lab.pod("legacy")
    vip = lab.vip(10)
    mesh = Mesh(tmp_path, envoy_factory)
    mesh.write(
        "mesh.yaml",
        docs(
            service("server", PORT, cluster_ip=vip),
            workload_entry(
                "server-v1",
                server.ip,
                {"app": "server", "security.istio.io/tlsMode": "istio"},
                service_account="server",
            ),
            STRICT,
        ),
    )
    mesh.host = lab.host_ip
    mesh.start_with_ca()
    agents: list[PodAgent] = []
    try:
        cfg = from_annotations({"traffic.sidecar.istio.io/excludeInboundPorts": str(ADMIN_PORT)})
        client.capture(cfg)
        server.capture(cfg)
        start_app(server, "server-v1", PORT)
        client_agent, server_agent = client_server_agents(mesh, lab.host_ip, client, server, envoy_bin, agents)
        start_captured(mesh, client_agent, server_agent, port=PORT, ready_timeout=30)

        answer = wait_http_200(mesh, client, vip, PORT, "/secure", 20, "a 200 over mTLS")
        seen = {k.lower(): v for k, v in json.loads(answer["body"])["headers"].items()}
        assert "spiffe://cluster.local/ns/default/sa/client" in seen.get("x-forwarded-client-cert", "")
        assert (
            server_agent.stat("listener.0.0.0.0_15006.server_ssl_socket_factory.downstream_context_secrets_not_ready")
            == 0
        )
        assert server_agent.stat("listener.0.0.0.0_15006.ssl.handshake") >= 1

        # A pod without a sidecar (no capture, no Envoy) calling in plaintext: refused.
        proc = legacy.run(
            [sys.executable, "-c", HTTP_GET, server.ip, str(PORT), "/plain", "{}"], check=False, timeout=20
        )
        assert proc.returncode != 0, f"plaintext call to a STRICT workload succeeded: {proc.stdout}"
        assert server_agent.stat("listener.0.0.0.0_15006.no_filter_chain_match") >= 1
    finally:
        for a in agents:
            a.remove()
        mesh.stop()
