"""Mutual TLS to a headless service's pod between captured sidecars: pods as
network namespaces with real iptables capture, each sidecar run by
`istiod-py agent` (workload certificate from the control plane's CA, SDS, Envoy).

A headless Kubernetes service has no VIP: the client dials the pod address, its
sidecar's `IP_PORT` listener hands the connection to the service's ORIGINAL_DST
cluster, which, as istiod builds it, carries the Istio mTLS socket when every
endpoint of the port runs a sidecar. The server's PeerAuthentication is STRICT
and an AuthorizationPolicy allows only the client's SPIFFE identity on that port:
the call succeeds only over mTLS with the client's certificate, and a plaintext
call from a pod without a sidecar is refused by virtualInbound.

`late`: the pod reaches its address only after both proxies are connected, as
a StatefulSet pod recreated elsewhere (same identity, new address): the
endpoint change is a full push (istiod's HeadlessEndpointUpdate), which brings
the client the new address's listener; an EDS-only push would leave the call
to the passthrough chain, in plaintext, refused."""

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

PORT = 9080  # the server's ordinary (VIP) service: start_captured waits for its listener
HEADLESS_PORT = 7071
HEADLESS_CLUSTER = f"outbound|{HEADLESS_PORT}||server-headless.default.svc.cluster.local"

STRICT = """apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: server-strict, namespace: default}
spec:
  selector: {matchLabels: {app: server}}
  mtls: {mode: STRICT}"""

# Only the client's identity, taken from the peer certificate, may use the headless port.
ONLY_CLIENT = f"""apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: server-headless-only-client, namespace: default}}
spec:
  selector: {{matchLabels: {{app: server}}}}
  action: ALLOW
  rules:
  - from: [{{source: {{principals: ["cluster.local/ns/default/sa/client"]}}}}]
    to: [{{operation: {{ports: ["{HEADLESS_PORT}"]}}}}]"""


@pytest.fixture
def lab() -> Iterator[NetnsLab]:
    with netns_lab() as lab:
        yield lab


@pytest.mark.parametrize("late", [False, True], ids=["endpoint-first", "endpoint-late"])
def test_strict_mtls_to_a_headless_service_pod(
    lab: NetnsLab, tmp_path: Path, envoy_factory: EnvoyFactory, envoy_bin: str, late: bool
) -> None:
    client, server, legacy = lab.pod("client"), lab.pod("server"), lab.pod("legacy")
    vip = lab.vip(10)
    mesh = Mesh(tmp_path, envoy_factory)

    def server_entry(address: str) -> str:
        labels = {"app": "server", "security.istio.io/tlsMode": "istio"}
        return workload_entry("server-v1", address, labels, service_account="server")

    services = (
        service("server", PORT, cluster_ip=vip),
        service("server-headless", HEADLESS_PORT, "tcp", app="server", cluster_ip="None"),
    )
    mesh.write("mesh.yaml", docs(*services, STRICT, ONLY_CLIENT))
    # Applied apart (not in mesh.yaml) so that `late` can replace it while running.
    mesh.apply(server_entry(lab.vip(20) if late else server.ip), sync=False)
    mesh.host = lab.host_ip
    mesh.start_with_ca()
    agents: list[PodAgent] = []
    try:
        cfg = from_annotations({"traffic.sidecar.istio.io/excludeInboundPorts": str(ADMIN_PORT)})
        client.capture(cfg)
        server.capture(cfg)
        start_app(server, "server-headless", HEADLESS_PORT)
        client_agent, server_agent = client_server_agents(mesh, lab.host_ip, client, server, envoy_bin, agents)
        start_captured(mesh, client_agent, server_agent, port=PORT, ready_timeout=30)
        if late:
            mesh.apply(server_entry(server.ip))
        # The pod address itself has a listener on the client (headless: one per endpoint).
        mesh.wait_listener(client_agent, f"{server.ip}_{HEADLESS_PORT}")

        answer = wait_http_200(mesh, client, server.ip, HEADLESS_PORT, "/pod", 20, "a 200 from the headless pod")
        assert json.loads(answer["body"])["name"] == "server-headless"
        # The client's sidecar dialled the pod through the headless cluster, over TLS ...
        assert client_agent.stat(f"cluster.{HEADLESS_CLUSTER}.upstream_cx_total") >= 1
        assert client_agent.stat(f"cluster.{HEADLESS_CLUSTER}.ssl.handshake") >= 1
        # ... which the server's virtualInbound terminated, with the client's
        # certificate (STRICT), and whose SPIFFE identity the ALLOW rule matched.
        assert server_agent.stat("listener.0.0.0.0_15006.ssl.handshake") >= 1
        allowed = server_agent.stats(filter_regex=r"rbac\.allowed$")
        assert sum(v for v in allowed.values() if isinstance(v, int)) >= 1, allowed
        assert server_agent.stat(f"cluster.inbound|{HEADLESS_PORT}||.upstream_cx_total") >= 1

        # A pod without a sidecar (no capture, no Envoy) calling the pod in plaintext: refused.
        before = server_agent.stat("listener.0.0.0.0_15006.no_filter_chain_match")
        proc = legacy.run(
            [sys.executable, "-c", HTTP_GET, server.ip, str(HEADLESS_PORT), "/plain", "{}"], check=False, timeout=20
        )
        assert proc.returncode != 0, f"plaintext call to a STRICT headless pod succeeded: {proc.stdout}"
        assert server_agent.stat("listener.0.0.0.0_15006.no_filter_chain_match") > before
    finally:
        for a in agents:
            a.remove()
        mesh.stop()
