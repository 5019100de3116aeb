"""Gateway API TLS passthrough (TLSRoute by SNI), HTTPS termination (certificate files
as istiod_py's listener `tls.options`), TCPRoute and GRPCRoute (by method) through a
real router Envoy to real upstreams."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from tests.e2e.test_gateway import CA, TlsUpstream, https_get
from tests.support.envoy import EnvoyFactory, EnvoyProcess
from tests.support.mesh import Mesh
from tests.support.net import allocate_ip
from tests.support.upstreams import GrpcEchoServer, TcpEchoServer, UpstreamFactory, grpc_echo, tcp_echo

GW_LABEL = "gateway.networking.k8s.io/gateway-name"


def service(name: str, port: int, host: str, up_port: int, port_name: str) -> str:
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: {port_name}, port: {port}}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: default}}
spec:
  address: {host}
  ports: {{{port_name}: {up_port}}}
  labels: {{app: {name}}}
---
"""


CONFIG = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: secure-web, namespace: default}
spec:
  parentRefs: [{name: edge, sectionName: https}]
  hostnames: [web.example.com]
  rules:
  - backendRefs: [{name: web, port: 9080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: default}
spec:
  gatewayClassName: istio
  listeners:
  - {name: grpc, port: 8080, protocol: HTTP, hostname: grpc.example.com}
  - {name: tcp, port: 9000, protocol: TCP}
  - {name: tls, port: 9443, protocol: TLS, tls: {mode: Passthrough}}
  - name: https
    port: 8443
    protocol: HTTPS
    hostname: web.example.com
    tls:
      options: {istiod-py.io/server-certificate: CERT, istiod-py.io/private-key: KEY}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: echo, namespace: default}
spec:
  parentRefs: [{name: edge, sectionName: grpc}]
  hostnames: [grpc.example.com]
  rules:
  - matches: [{method: {service: echo.Echo, method: Echo}, headers: [{name: x-pick, value: b}]}]
    backendRefs: [{name: grpc-b, port: 50051}]
  - matches: [{method: {service: other.Other}}]
    backendRefs: [{name: grpc-b, port: 50051}]
  - matches: [{method: {service: echo.Echo}}]
    backendRefs: [{name: grpc-a, port: 50051}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: db, namespace: default}
spec:
  parentRefs: [{name: edge, sectionName: tcp}]
  rules:
  - backendRefs: [{name: db, port: 9300}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: secure, namespace: default}
spec:
  parentRefs: [{name: edge, sectionName: tls}]
  hostnames: [secure.example.com]
  rules:
  - backendRefs: [{name: secure, port: 8443}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: secure-two, namespace: default}
spec:
  parentRefs: [{name: edge, sectionName: tls}]
  hostnames: [two.example.com]
  rules:
  - backendRefs: [{name: secure-two, port: 8443}]
"""


@dataclass
class Env:
    mesh: Mesh
    gw: EnvoyProcess
    ip: str
    ca: CA
    grpc_a: GrpcEchoServer
    grpc_b: GrpcEchoServer
    db: TcpEchoServer


@pytest.fixture
def env(tmp_path: Path, envoy_factory: EnvoyFactory, upstreams: UpstreamFactory) -> Iterator[Env]:
    ca = CA(tmp_path / "certs")
    secure = TlsUpstream("secure-backend", ca.issue("secure", ["secure.example.com"]))
    two = TlsUpstream("second-backend", ca.issue("two", ["two.example.com"]))
    mesh = Mesh(tmp_path, envoy_factory)
    try:
        a, b, db = upstreams.grpc("grpc-a"), upstreams.grpc("grpc-b"), upstreams.tcp("db")
        web = upstreams.http("web")
        web_pem = ca.issue("web", ["web.example.com"])
        mesh.write(
            "services.yaml",
            service("grpc-a", 50051, a.host, a.port, "grpc")
            + service("grpc-b", 50051, b.host, b.port, "grpc")
            + service("db", 9300, db.host, db.port, "tcp")
            + service("secure", 8443, secure.host, secure.port, "tls")
            + service("secure-two", 8443, two.host, two.port, "tls")
            + service("web", 9080, web.host, web.port, "http"),
        )
        mesh.write("gateway-api.yaml", CONFIG.replace("CERT", str(web_pem.cert)).replace("KEY", str(web_pem.key)))
        mesh.start()
        ip = allocate_ip()
        gw = mesh.gateway("edge-istio", ip=ip, namespace="default", labels={GW_LABEL: "edge"})
        for port in (8080, 9000, 9443, 8443):
            mesh.wait_listener(gw, f"{ip}_{port}")
        mesh.wait_synced()
        yield Env(mesh, gw, ip, ca, a, b, db)
    finally:
        mesh.stop()
        secure.stop()
        two.stop()


def test_tls_passthrough_by_sni(env: Env) -> None:
    ca = env.ca.pem.cert
    r = env.mesh.wait(
        lambda: (x := https_get(env.ip, 9443, "secure.example.com", "/", ca)).status == 200 and x,
        10,
        "passthrough to the TLS upstream",
    )
    # The upstream's own certificate reached the client: the gateway did not terminate TLS.
    assert r.peer_cn == "secure.example.com" and r.body == b"secure-backend"
    r2 = https_get(env.ip, 9443, "two.example.com", "/", ca)
    assert r2.peer_cn == "two.example.com" and r2.body == b"second-backend"
    # An SNI no TLSRoute names has no route.
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        https_get(env.ip, 9443, "three.example.com", "/", ca)


def test_https_termination_with_certificate_files(env: Env) -> None:
    ca = env.ca.pem.cert
    r = env.mesh.wait(
        lambda: (x := https_get(env.ip, 8443, "web.example.com", "/hello", ca)).status == 200 and x,
        10,
        "HTTPS through the Gateway API listener",
    )
    # The gateway terminated TLS with the listener's certificate and routed by HTTPRoute.
    assert r.peer_cn == "web.example.com" and json.loads(r.body)["server"] == "web"


def test_tcp_route(env: Env) -> None:
    reply = env.mesh.wait(lambda: tcp_echo(env.ip, 9000, "ping"), 10, "the TCP route")
    assert reply == "db: ping"


def test_grpc_route_by_method_and_header(env: Env) -> None:
    def call(**kw: object) -> str:
        return str(grpc_echo(env.ip, 8080, "hi", authority="grpc.example.com", **kw)["server"])  # type: ignore[arg-type]

    env.mesh.wait(lambda: call() == "grpc-a", 10, "the gRPC route")
    assert call(metadata={"x-pick": "b"}) == "grpc-b"
    assert call(metadata={"x-pick": "c"}) == "grpc-a"
    # Another host: the listener's hostname does not match, no route.
    with pytest.raises(grpc.RpcError) as err:
        grpc_echo(env.ip, 8080, "hi", authority="elsewhere.example.com")
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
