"""Transparent capture end to end: two pods as network namespaces, each with
`istiod-py iptables` rules applied by real iptables, a real Envoy running as UID
1337 inside each with a REDIRECT bootstrap, and the unchanged sample app on its
normal port. The client app calls the server's Service VIP with a plain HTTP
client; the VirtualService routing and fault applied on the way, the headers
the server app sees and both Envoys' stats show the call went through the
client sidecar (virtualOutbound -> 0.0.0.0_9080) and the server sidecar
(virtualInbound -> inbound|9080||). A port excluded by the capture annotations
reaches the app directly, through neither sidecar."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from istiod_py.inject.iptables import from_annotations
from tests.support.capture_pods import (
    ADMIN_PORT,
    PodEnvoy,
    captured_sidecar,
    http_get,
    start_app,
    start_captured,
    wait_http_200,
)
from tests.support.configs import docs, service, workload_entry
from tests.support.envoy import EnvoyFactory
from tests.support.mesh import Mesh
from tests.support.netns import NetnsLab, netns_lab

APP_PORT = 9080
OPAQUE_PORT = 7070  # declared TCP: proxied as bytes through the VIP_PORT listener
HEADLESS_PORT = 7071  # a headless service: one listener per endpoint address
SNIFFED_PORT = 7072  # no declared protocol: the server sidecar detects HTTP
EXCLUDED_PORT = 9090


def config(vip: str, server_ip: str, client_ip: str) -> str:
    return docs(
        service("server", APP_PORT, cluster_ip=vip, more_ports=[("tcp-opaque", OPAQUE_PORT), ("web", SNIFFED_PORT)]),
        service("server-headless", HEADLESS_PORT, "tcp", app="server", cluster_ip="None"),
        workload_entry("server-v1", server_ip, {"app": "server", "version": "v1"}),
        workload_entry("client-v1", client_ip, {"app": "client", "version": "v1"}),
        """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: server, namespace: default}
spec:
  hosts: [server.default.svc.cluster.local]
  http:
  - match: [{headers: {x-fault: {exact: abort}}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: server.default.svc.cluster.local}}]
  - route: [{destination: {host: server.default.svc.cluster.local}}]
    headers: {request: {set: {x-routed-by: virtual-service}}}""",
    )


# Sends bytes that are not HTTP and reads what comes back (the app answers 400 to them).
RAW_HELLO = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
c.sendall(b"HELO not http\r\n\r\n")
c.recv(100)
"""

# Both pods: Envoy's admin port (reached across the bridge) and the excluded app
# port stay uncaptured; the client also lets its outbound calls to that port go
# straight out.
ANNOTATIONS = {
    "traffic.sidecar.istio.io/excludeInboundPorts": f"{ADMIN_PORT},{EXCLUDED_PORT}",
    "traffic.sidecar.istio.io/excludeOutboundPorts": str(EXCLUDED_PORT),
}


@pytest.fixture
def lab() -> Iterator[NetnsLab]:
    with netns_lab() as lab:
        yield lab


def _stat(envoy: PodEnvoy, name: str) -> int:
    return envoy.stat(name)


def _outbound_connections(envoy: PodEnvoy) -> int:
    """Connections any outbound listener accepted (virtualOutbound or the one it handed them to)."""
    return sum(
        int(v)
        for k, v in envoy.stats(r"^listener\.0\.0\.0\.0_\d+\.downstream_cx_total$").items()
        if k != "listener.0.0.0.0_15006.downstream_cx_total"
    )


def test_traffic_between_pods_goes_through_both_sidecars(
    lab: NetnsLab, tmp_path: Path, envoy_factory: EnvoyFactory, envoy_bin: str
) -> None:
    client, server = lab.pod("client"), lab.pod("server")
    vip = lab.vip(10)
    mesh = Mesh(tmp_path, envoy_factory)
    mesh.write(
        "mesh.yaml",
        config(vip, server.ip, client.ip),
    )
    mesh.start(host=lab.host_ip)
    envoys: list[PodEnvoy] = []
    try:
        for pod in (client, server):
            pod.capture_init(ANNOTATIONS)  # as the injected init container: `istiod-py iptables`
        start_app(server, "server-v1", APP_PORT)
        start_app(server, "server-excluded", EXCLUDED_PORT)
        start_app(server, "server-opaque", OPAQUE_PORT)
        start_app(server, "server-headless", HEADLESS_PORT)
        start_app(server, "server-sniffed", SNIFFED_PORT)
        discovery = f"{lab.host_ip}:{mesh.xds_port}"
        client_envoy = captured_sidecar(client, discovery, name="client-v1", labels={"app": "client", "version": "v1"})
        server_envoy = captured_sidecar(server, discovery, name="server-v1", labels={"app": "server", "version": "v1"})
        envoys += [client_envoy, server_envoy]
        start_captured(mesh, client_envoy, server_envoy, port=APP_PORT)
        mesh.wait_listener(client_envoy, "virtualOutbound")

        # The app calls the Service VIP as if there were no mesh.
        answer = wait_http_200(
            mesh, client, vip, APP_PORT, "/hello", 15, "a 200 from the server app through both sidecars"
        )
        seen = json.loads(answer["body"])
        assert seen["name"] == "server-v1"
        headers = {k.lower(): v for k, v in seen["headers"].items()}
        assert headers.get("x-routed-by") == "virtual-service"  # the client sidecar's route
        assert "x-request-id" in headers  # generated by the client sidecar's HCM
        assert answer["headers"].get("server") == "envoy" or "x-envoy-upstream-service-time" in {
            k.lower() for k in answer["headers"]
        }

        # The fault is the client sidecar's doing: the server app never sees it.
        faulted = http_get(client, vip, APP_PORT, "/fault", {"x-fault": "abort"})
        assert faulted["status"] == 418

        # The server sidecar's inbound side carried the request to the app.
        assert _stat(server_envoy, "cluster.inbound|9080||.upstream_rq_total") >= 1
        assert _stat(server_envoy, "listener.0.0.0.0_15006.downstream_cx_total") >= 1
        assert _stat(client_envoy, "cluster.outbound|9080||server.default.svc.cluster.local.upstream_rq_total") >= 1
        # virtualOutbound (15001) accepted it and handed it to the port's listener, where Envoy counts it.
        assert _stat(client_envoy, "listener.0.0.0.0_9080.downstream_cx_total") >= 1

        # The pod address instead of the VIP: no service vhost matches the Host,
        # so allow_any passes it through to its original destination, which the
        # server sidecar captures.
        served_before = _stat(server_envoy, "cluster.inbound|9080||.upstream_rq_total")
        by_ip = http_get(client, server.ip, APP_PORT, "/by-ip")
        assert by_ip["status"] == 200 and json.loads(by_ip["body"])["name"] == "server-v1"
        assert _stat(client_envoy, "cluster.PassthroughCluster.upstream_rq_total") >= 1
        assert _stat(server_envoy, "cluster.inbound|9080||.upstream_rq_total") == served_before + 1

        # An opaque (TCP) port of the Service: the VIP's own listener proxies the
        # bytes without HTTP processing, to the server sidecar's 7070 chain.
        mesh.wait_listener(client_envoy, f"{vip}_{OPAQUE_PORT}")
        opaque = http_get(client, vip, OPAQUE_PORT, "/opaque")
        assert opaque["status"] == 200 and json.loads(opaque["body"])["name"] == "server-opaque"
        assert "x-request-id" not in {k.lower() for k in json.loads(opaque["body"])["headers"]}
        assert _stat(client_envoy, f"listener.{vip}_{OPAQUE_PORT}.downstream_cx_total") >= 1
        assert _stat(server_envoy, f"cluster.inbound|{OPAQUE_PORT}||.upstream_cx_total") >= 1

        # A headless service: the pod address itself has a listener, to the original destination.
        mesh.wait_listener(client_envoy, f"{server.ip}_{HEADLESS_PORT}")
        pod = http_get(client, server.ip, HEADLESS_PORT, "/pod")
        assert pod["status"] == 200 and json.loads(pod["body"])["name"] == "server-headless"
        assert (
            _stat(
                client_envoy,
                f"cluster.outbound|{HEADLESS_PORT}||server-headless.default.svc.cluster.local.upstream_cx_total",
            )
            >= 1
        )
        assert _stat(server_envoy, f"cluster.inbound|{HEADLESS_PORT}||.upstream_cx_total") >= 1

        # A port without a declared protocol: both sidecars detect HTTP. The client's
        # routes apply (the VirtualService header), and the server's HTTP chain
        # (not its TCP one) serves it.
        sniffed = http_get(client, vip, SNIFFED_PORT, "/sniffed")
        assert sniffed["status"] == 200
        sniffed_seen = json.loads(sniffed["body"])
        assert sniffed_seen["name"] == "server-sniffed"
        sniffed_headers = {k.lower(): v for k, v in sniffed_seen["headers"].items()}
        assert sniffed_headers.get("x-routed-by") == "virtual-service"
        assert _stat(client_envoy, f"http.outbound_0.0.0.0_{SNIFFED_PORT}.downstream_rq_total") >= 1
        assert _stat(server_envoy, f"http.inbound_0.0.0.0_{SNIFFED_PORT}.downstream_rq_total") >= 1
        # Not HTTP on the same port: the client sidecar passes the bytes through as TCP.
        tcp_before = _stat(
            client_envoy, f"cluster.outbound|{SNIFFED_PORT}||server.default.svc.cluster.local.upstream_cx_total"
        )
        raw = client.run([sys.executable, "-c", RAW_HELLO, vip, str(SNIFFED_PORT)], check=False, timeout=20)
        assert raw.returncode == 0, raw.stderr
        tcp_after = _stat(
            client_envoy, f"cluster.outbound|{SNIFFED_PORT}||server.default.svc.cluster.local.upstream_cx_total"
        )
        assert tcp_after > tcp_before

        # The excluded port: straight to the app, through neither sidecar.
        out_before = _outbound_connections(client_envoy)
        in_before = _stat(server_envoy, "listener.0.0.0.0_15006.downstream_cx_total")
        direct = http_get(client, server.ip, EXCLUDED_PORT, "/direct")
        assert direct["status"] == 200
        body = json.loads(direct["body"])
        assert body["name"] == "server-excluded"
        assert "x-request-id" not in {k.lower() for k in body["headers"]}
        assert _outbound_connections(client_envoy) == out_before
        assert _stat(server_envoy, "listener.0.0.0.0_15006.downstream_cx_total") == in_before
    finally:
        for e in envoys:
            e.remove()
        mesh.stop()


def test_tproxy_capture(lab: NetnsLab, tmp_path: Path, envoy_factory: EnvoyFactory, envoy_bin: str) -> None:
    """INTERCEPTION_MODE TPROXY: inbound is diverted in the mangle table to the
    transparent virtualInbound (original destination kept, original source
    restored toward the app); the proxy runs as UID 0 / GID 1337 with NET_ADMIN
    as Istio's injector runs it in this mode."""
    client, server = lab.pod("client"), lab.pod("server")
    vip = lab.vip(10)
    mesh = Mesh(tmp_path, envoy_factory)
    mesh.write(
        "mesh.yaml",
        docs(service("server", APP_PORT, cluster_ip=vip), workload_entry("server-v1", server.ip, {"app": "server"})),
    )
    mesh.start(host=lab.host_ip)
    envoys: list[PodEnvoy] = []
    try:
        cfg = from_annotations(
            {
                "sidecar.istio.io/interceptionMode": "TPROXY",
                "traffic.sidecar.istio.io/excludeInboundPorts": str(ADMIN_PORT),
            }
        )
        for pod in (client, server):
            pod.capture(cfg)
        saved = server.iptables_save()
        assert "-j TPROXY" in saved and "ISTIO_DIVERT" in saved
        start_app(server, "server-v1", APP_PORT)
        discovery = f"{lab.host_ip}:{mesh.xds_port}"
        envoys += [
            captured_sidecar(client, discovery, name="client-v1", labels={"app": "client"}, mode="TPROXY"),
            captured_sidecar(server, discovery, name="server-v1", labels={"app": "server"}, mode="TPROXY"),
        ]
        client_envoy, server_envoy = envoys
        start_captured(mesh, client_envoy, server_envoy, port=APP_PORT)
        answer = wait_http_200(mesh, client, vip, APP_PORT, "/tproxy", 15, "a 200 through TPROXY capture")
        assert json.loads(answer["body"])["name"] == "server-v1"
        assert _stat(client_envoy, "cluster.outbound|9080||server.default.svc.cluster.local.upstream_rq_total") >= 1
        assert _stat(server_envoy, "listener.0.0.0.0_15006.downstream_cx_total") >= 1
        assert _stat(server_envoy, "cluster.inbound|9080||.upstream_rq_total") >= 1
    finally:
        for e in envoys:
            e.remove()
        mesh.stop()
