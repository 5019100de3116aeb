"""Protocols through a sidecar (HTTP/1.1, HTTP/2, gRPC, WebSocket, TCP), protocol
selection from port names, outboundTrafficPolicy, and Sidecar/exportTo scoping."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.envoy import EnvoyFactory
from tests.support.mesh import Mesh
from tests.support.net import allocate_ip
from tests.support.upstreams import (
    UpstreamFactory,
    grpc_echo,
    h2_request,
    http_request,
    tcp_echo,
    websocket_exchange,
)


def service(name: str, ns: str, port: int, port_name: str, export: str = "") -> str:
    annotations = f"\n  annotations: {{networking.istio.io/exportTo: '{export}'}}" if export else ""
    return f"""
apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {ns}{annotations}
spec:
  selector: {{app: {name}}}
  ports:
  - {{name: {port_name}, port: {port}}}
"""


def entry(name: str, ns: str, host: str, port: int) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: {ns}}}
spec:
  address: {host}
  labels: {{app: {name}}}
  ports: {{{_port_name_for(name)}: {port}}}
"""


_PORT_NAMES: dict[str, str] = {}


def _port_name_for(name: str) -> str:
    return _PORT_NAMES[name]


def client_sidecar(bind: str, hosts: str = '["*/*"]', ns: str = "default") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: client, namespace: {ns}}}
spec:
  workloadSelector: {{labels: {{app: client}}}}
  egress:
  - bind: {bind}
    hosts: {hosts}
"""


@pytest.fixture
def mesh(tmp_path: Path, envoy_factory: EnvoyFactory) -> Mesh:
    m = Mesh(tmp_path, envoy_factory)
    yield m  # type: ignore[misc]
    m.stop()


def test_every_protocol_through_the_sidecar(mesh: Mesh, upstreams: UpstreamFactory) -> None:
    http = upstreams.http("http-app")
    h2 = upstreams.h2("h2-app")
    grpc_app = upstreams.grpc("grpc-app")
    ws = upstreams.websocket("ws-app")
    tcp = upstreams.tcp("tcp-app")
    specs = [
        ("web", 9080, "http", http),
        ("h2", 9081, "http2-api", h2),
        ("echo", 9090, "grpc", grpc_app),
        ("chat", 9091, "http-ws", ws),
        ("db", 9092, "tcp", tcp),
    ]
    docs = []
    for name, port, pname, up in specs:
        _PORT_NAMES[name] = pname
        docs += [service(name, "default", port, pname), entry(name, "default", up.host, up.port)]
    bind = allocate_ip()
    docs.append(client_sidecar(bind))
    mesh.write("mesh.yaml", "---".join(docs))
    mesh.start()
    sc = mesh.sidecar("client", labels={"app": "client"})
    for _, port, _, _ in specs:
        mesh.wait_listener(sc, f"{bind}_{port}")

    r = mesh.wait(lambda: http_request(bind, 9080, "/x", host="web:9080"), 10, "HTTP/1.1")
    assert r.status == 200 and r.json()["server"] == "http-app"
    # HTTP/2 to the app because the port is named http2-*: the app sees h2c.
    r2 = mesh.wait(lambda: http_request(bind, 9081, "/y", host="h2:9081"), 10, "HTTP/2 upstream")
    assert r2.status == 200 and r2.json()["server"] == "h2-app" and r2.json()["protocol"] == "h2c"
    # h2c from the client as well.
    r3 = h2_request(bind, 9081, "/z", host="h2:9081")
    assert r3.status == 200 and r3.json()["server"] == "h2-app"
    reply = mesh.wait(lambda: grpc_echo(bind, 9090, "ping", authority="echo:9090"), 10, "gRPC")
    assert reply["server"] == "grpc-app" and reply["message"] == "ping"
    assert websocket_exchange(bind, 9091, ["one", "two"], host="chat:9091") == ["ws-app: one", "ws-app: two"]
    assert mesh.wait(lambda: tcp_echo(bind, 9092, "hello"), 10, "TCP") == "tcp-app: hello"
    # The TCP port is a tcp_proxy, the others HTTP connection managers.
    dump = sc.config_dump()
    text = str(dump)
    assert "envoy.filters.network.tcp_proxy" in text and "outbound|9092||db.default.svc.cluster.local" in text


@pytest.mark.parametrize("policy", ["ALLOW_ANY", "REGISTRY_ONLY"])
def test_outbound_traffic_policy(tmp_path: Path, envoy_factory: EnvoyFactory, upstreams: UpstreamFactory,
                                 policy: str) -> None:  # fmt: skip
    mesh = Mesh(tmp_path, envoy_factory, mesh_config={"outboundTrafficPolicy": {"mode": policy}})
    try:
        up = upstreams.http("known")
        _PORT_NAMES["known"] = "http"
        bind = allocate_ip()
        mesh.write(
            "mesh.yaml",
            "---".join([service("known", "default", 9080, "http"), entry("known", "default", up.host, up.port),
                        client_sidecar(bind)]),
        )  # fmt: skip
        mesh.start()
        sc = mesh.sidecar("client", labels={"app": "client"})
        mesh.wait_listener(sc, f"{bind}_9080")
        assert mesh.wait(lambda: http_request(bind, 9080, host="known:9080").status == 200, 10, "known host")
        r = http_request(bind, 9080, host="unknown.example.com")
        if policy == "REGISTRY_ONLY":
            assert r.status == 502  # the block_all virtual host
            assert sc.stat("cluster.PassthroughCluster.upstream_rq_total") == 0
        else:
            # Sent to PassthroughCluster (which has no original destination without iptables).
            assert sc.wait_for(lambda: sc.stat("cluster.PassthroughCluster.upstream_cx_none_healthy")
                               + sc.stat("cluster.PassthroughCluster.upstream_rq_total") >= 1, 5)  # fmt: skip
    finally:
        mesh.stop()


def test_sidecar_egress_hosts_and_export_to_scope_what_a_proxy_gets(mesh: Mesh, upstreams: UpstreamFactory) -> None:
    a = upstreams.http("a-app")
    b = upstreams.http("b-app")
    private = upstreams.http("private-app")
    for n in ("svc-a", "svc-b", "private"):
        _PORT_NAMES[n] = "http"
    bind = allocate_ip()
    mesh.write(
        "mesh.yaml",
        "---".join(
            [
                service("svc-a", "team-a", 9080, "http"),
                entry("svc-a", "team-a", a.host, a.port),
                service("svc-b", "team-b", 9080, "http"),
                entry("svc-b", "team-b", b.host, b.port),
                # exported only to its own namespace
                service("private", "team-b", 9080, "http", export="."),
                entry("private", "team-b", private.host, private.port),
                client_sidecar(bind, '["./*", "team-b/*"]', ns="team-a"),
            ]
        ),
    )
    mesh.start()
    sc = mesh.sidecar("client", namespace="team-a", labels={"app": "client"})
    mesh.wait_listener(sc, f"{bind}_9080")
    names = sc.cluster_names()
    assert "outbound|9080||svc-a.team-a.svc.cluster.local" in names
    assert "outbound|9080||svc-b.team-b.svc.cluster.local" in names
    # exportTo "." hides team-b's private service from team-a.
    assert "outbound|9080||private.team-b.svc.cluster.local" not in names
    assert mesh.wait(lambda: http_request(bind, 9080, host="svc-a:9080").status == 200, 10, "same namespace")
    assert http_request(bind, 9080, host="svc-b.team-b:9080").json()["server"] == "b-app"
    assert http_request(bind, 9080, host="private.team-b:9080").status != 200
    # Narrow the Sidecar to its own namespace: team-b disappears from the proxy.
    mesh.write(
        "mesh.yaml",
        (mesh.config_dir / "mesh.yaml").read_text().replace('["./*", "team-b/*"]', '["./*"]'),
    )
    sc.wait_for(lambda: "outbound|9080||svc-b.team-b.svc.cluster.local" not in sc.cluster_names(), 10)
    assert http_request(bind, 9080, host="svc-a:9080").status == 200
