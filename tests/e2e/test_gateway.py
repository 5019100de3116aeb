"""Gateways end to end: the real control plane on files, a real router Envoy
(and a client sidecar for egress), real upstreams; assertions on traffic.

Ingress HTTP (bookinfo-gateway shape + Host routing), HTTPS SIMPLE with SNI
between two certificates, MUTUAL, PASSTHROUGH by SNI to a TLS upstream,
httpsRedirect, and the Istio egress gateway task."""

from __future__ import annotations

import datetime
import http.client
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.envoy import EnvoyFactory, EnvoyProcess
from tests.support.mesh import Mesh
from tests.support.net import allocate_ip, free_port
from tests.support.upstreams import HttpEchoServer, UpstreamFactory, http_request

# --- certificates ---------------------------------------------------------------------------


@dataclass
class Pem:
    cert: Path
    key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(dirpath: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Pem:
    c, k = dirpath / f"{name}.pem", dirpath / f"{name}.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return Pem(c, k)


class CA:
    def __init__(self, dirpath: Path, name: str = "test-ca") -> None:
        self.dir = dirpath
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = _key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = _write(self.dir, name, self.cert, self.key)

    def issue(self, name: str, dns: list[str], client: bool = False) -> Pem:
        key = _key()
        now = datetime.datetime.now(datetime.UTC)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return _write(self.dir, name, cert, key)


# --- clients and a TLS upstream -------------------------------------------------------------


@dataclass
class TlsResult:
    status: int
    body: bytes
    peer_cn: str


def https_get(
    ip: str,
    port: int,
    sni: str,
    path: str,
    ca: Path,
    client: Pem | None = None,
    timeout: float = 5.0,
    check_hostname: bool = True,
) -> TlsResult:
    """One HTTPS request to ip:port with SNI and Host `sni`, verifying the server against `ca`."""
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = check_hostname
    if client is not None:
        ctx.load_cert_chain(str(client.cert), str(client.key))
    with (
        socket.create_connection((ip, port), timeout=timeout) as raw,
        ctx.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        peer: Any = tls.getpeercert()
        cn = dict(x[0] for x in peer["subject"])["commonName"]
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
        resp = http.client.HTTPResponse(tls)  # type: ignore[arg-type]
        resp.begin()
        return TlsResult(resp.status, resp.read(), cn)


class TlsUpstream:
    """An HTTPS server answering its own name: the far end of PASSTHROUGH."""

    def __init__(self, name: str, pem: Pem) -> None:
        self.name = name
        self.host = allocate_ip()
        self.port = free_port(self.host)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(pem.cert), str(pem.key))
        body = name.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((self.host, self.port), Handler)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.daemon = True
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- config ------------------------------------------------------------------------------------


def service(name: str, port: int, up_host: str, up_port: int, port_name: str = "http") -> str:
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
metadata: {{name: {name}-v1, namespace: default}}
spec:
  address: {up_host}
  ports: {{{port_name}: {up_port}}}
  labels: {{app: {name}}}
---
"""


def vs(name: str, host: str, dest: str, gateway: str = "gw", port: int = 9080) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: ["{host}"]
  gateways: [{gateway}]
  http:
  - route: [{{destination: {{host: {dest}, port: {{number: {port}}}}}}}]
---
"""


@pytest.fixture
def mesh(tmp_path: Path, envoy_factory: EnvoyFactory) -> Iterator[Mesh]:
    m = Mesh(tmp_path, envoy_factory)
    yield m
    m.stop()


def start_gateway(mesh: Mesh, ports: list[int], labels: dict[str, str] | None = None) -> tuple[EnvoyProcess, str]:
    ip = allocate_ip()
    mesh.start()
    gw = mesh.gateway("ingressgateway", ip=ip, namespace="istio-system", labels=labels or {"istio": "ingressgateway"})
    for p in ports:
        mesh.wait_listener(gw, f"{ip}_{p}")
    return gw, ip


# --- tests -------------------------------------------------------------------------------------


BOOKINFO_GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo, namespace: default}
spec:
  hosts: ["*"]
  gateways: [bookinfo-gateway]
  http:
  - match:
    - uri: {exact: /productpage}
    - uri: {prefix: /static}
    route:
    - destination: {host: productpage, port: {number: 9080}}
"""


def test_ingress_http_bookinfo_shape_and_host_routing(mesh: Mesh, upstreams: UpstreamFactory) -> None:
    pp = upstreams.http("productpage")
    rv = upstreams.http("reviews")
    mesh.write("svc.yaml", service("productpage", 9080, pp.host, pp.port) + service("reviews", 9080, rv.host, rv.port))
    mesh.write("gw.yaml", BOOKINFO_GATEWAY)
    mesh.write("reviews-vs.yaml", vs("reviews-ext", "reviews.example.com", "reviews", "bookinfo-gateway"))
    gw, ip = start_gateway(mesh, [8080])

    def get(path: str, host: str = "bookinfo.example.com") -> Any:
        return http_request(ip, 8080, path, host=host)

    mesh.wait(lambda: get("/productpage").status == 200, 10, "productpage through the gateway")
    r = get("/productpage")
    assert r.json()["server"] == "productpage" and r.json()["path"] == "/productpage"
    assert get("/static/style.css").json()["server"] == "productpage"
    assert get("/other").status == 404  # no route matches
    # Host-based: the more specific virtual host wins.
    assert get("/", host="reviews.example.com").json()["server"] == "reviews"
    assert get("/", host="reviews.example.com:8080").json()["server"] == "reviews"
    assert gw.stat(f"http.outbound_{ip}_8080.downstream_rq_2xx") >= 4
    mesh.wait_synced()


def tls_config(ca: CA, a: Pem, b: Pem, m: Pem) -> str:
    return (
        f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 8443, name: https-a, protocol: HTTPS}}
    hosts: [a.example.com]
    tls: {{mode: SIMPLE, serverCertificate: {a.cert}, privateKey: {a.key}}}
  - port: {{number: 8443, name: https-b, protocol: HTTPS}}
    hosts: [b.example.com]
    tls: {{mode: SIMPLE, serverCertificate: {b.cert}, privateKey: {b.key}}}
  - port: {{number: 9443, name: https-mtls, protocol: HTTPS}}
    hosts: [mtls.example.com]
    tls: {{mode: MUTUAL, serverCertificate: {m.cert}, privateKey: {m.key}, caCertificates: {ca.pem.cert}}}
  - port: {{number: 8081, name: http, protocol: HTTP}}
    hosts: [a.example.com]
    tls: {{httpsRedirect: true}}
  - port: {{number: 9444, name: tls, protocol: TLS}}
    hosts: [secure.example.com]
    tls: {{mode: PASSTHROUGH}}
  - port: {{number: 15443, name: tls-auto, protocol: TLS}}
    hosts: ["*.local"]
    tls: {{mode: AUTO_PASSTHROUGH}}
---
"""
        + vs("a", "a.example.com", "svc-a")
        + vs("b", "b.example.com", "svc-b")
        + vs("m", "mtls.example.com", "svc-a")
        + """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: secure, namespace: default}
spec:
  hosts: [secure.example.com]
  gateways: [gw]
  tls:
  - match: [{port: 9444, sniHosts: [secure.example.com]}]
    route: [{destination: {host: secure-svc, port: {number: 8443}}}]
"""
    )


@dataclass
class TlsSetup:
    gw: EnvoyProcess
    ip: str
    ca: CA
    client: Pem
    secure: TlsUpstream


@pytest.fixture
def tls_setup(mesh: Mesh, upstreams: UpstreamFactory, tmp_path: Path) -> Iterator[TlsSetup]:
    ca = CA(tmp_path / "certs")
    a = ca.issue("a", ["a.example.com"])
    b = ca.issue("b", ["b.example.com"])
    m = ca.issue("mtls", ["mtls.example.com"])
    client = ca.issue("client", ["client.example.com"], client=True)
    secure = TlsUpstream("secure-backend", ca.issue("secure", ["secure.example.com"]))
    up_a, up_b = upstreams.http("svc-a"), upstreams.http("svc-b")
    mesh.write(
        "svc.yaml",
        service("svc-a", 9080, up_a.host, up_a.port)
        + service("svc-b", 9080, up_b.host, up_b.port)
        + service("secure-svc", 8443, secure.host, secure.port, port_name="tls"),
    )
    mesh.write("gw.yaml", tls_config(ca, a, b, m))
    try:
        gw, ip = start_gateway(mesh, [8443, 9443, 8081, 9444, 15443])
        mesh.wait_synced()  # every listener ACKed: Envoy accepted the TLS config
        yield TlsSetup(gw, ip, ca, client, secure)
    finally:
        secure.stop()


def test_https_simple_sni_picks_certificate_and_route(mesh: Mesh, tls_setup: TlsSetup) -> None:
    s = tls_setup
    ca = s.ca.pem.cert
    mesh.wait(lambda: https_get(s.ip, 8443, "a.example.com", "/x", ca).status == 200, 10, "HTTPS a")
    ra = https_get(s.ip, 8443, "a.example.com", "/x", ca)
    rb = https_get(s.ip, 8443, "b.example.com", "/y", ca)
    assert ra.peer_cn == "a.example.com" and json.loads(ra.body)["server"] == "svc-a"
    assert rb.peer_cn == "b.example.com" and json.loads(rb.body)["server"] == "svc-b"
    assert json.loads(rb.body)["path"] == "/y"
    # A client that trusts another CA refuses the gateway's certificate.
    other = CA(s.ca.dir / "other", "other-ca")
    with pytest.raises(ssl.SSLCertVerificationError):
        https_get(s.ip, 8443, "a.example.com", "/", other.pem.cert)
    # An SNI no server owns matches no filter chain: the connection is refused.
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        https_get(s.ip, 8443, "c.example.com", "/", ca)


def test_https_redirect(mesh: Mesh, tls_setup: TlsSetup) -> None:
    r = mesh.wait(
        lambda: (x := http_request(tls_setup.ip, 8081, "/p?q=1", host="a.example.com")).status == 301 and x,
        10,
        "the redirect",
    )
    assert r.headers["location"] == "https://a.example.com/p?q=1"


def test_https_mutual_requires_client_cert(mesh: Mesh, tls_setup: TlsSetup) -> None:
    s = tls_setup
    ca = s.ca.pem.cert
    ok = mesh.wait(
        lambda: (x := https_get(s.ip, 9443, "mtls.example.com", "/m", ca, s.client)).status == 200 and x,
        10,
        "mTLS with a client certificate",
    )
    assert json.loads(ok.body)["server"] == "svc-a"
    # Without a client certificate the handshake (TLS 1.3: the first read) fails.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_get(s.ip, 9443, "mtls.example.com", "/m", ca)


def test_tls_passthrough_by_sni(mesh: Mesh, tls_setup: TlsSetup) -> None:
    s = tls_setup
    ca = s.ca.pem.cert
    r = mesh.wait(
        lambda: (x := https_get(s.ip, 9444, "secure.example.com", "/", ca)).status == 200 and x,
        10,
        "passthrough to the TLS upstream",
    )
    # The upstream's own certificate reached the client: the gateway did not terminate TLS.
    assert r.peer_cn == "secure.example.com" and r.body == b"secure-backend"
    assert s.gw.stat("cluster.outbound|8443||secure-svc.default.svc.cluster.local.upstream_cx_total") >= 1


def test_auto_passthrough_sni_names_the_cluster(mesh: Mesh, tls_setup: TlsSetup) -> None:
    s = tls_setup
    sni = "outbound_.8443_._.secure-svc.default.svc.cluster.local"
    r = mesh.wait(
        lambda: (x := https_get(s.ip, 15443, sni, "/", s.ca.pem.cert, check_hostname=False)).status == 200 and x,
        10,
        "AUTO_PASSTHROUGH to the cluster the SNI names",
    )
    assert r.peer_cn == "secure.example.com" and r.body == b"secure-backend"
    assert s.gw.stat(f"cluster.{sni}.upstream_cx_total") >= 1


def egress_config(external: HttpEchoServer, gw_ip: str, client_bind: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: external, namespace: default}}
spec:
  hosts: [external.example.com]
  ports: [{{number: 8000, name: http, protocol: HTTP}}]
  resolution: STATIC
  location: MESH_EXTERNAL
  endpoints: [{{address: {external.host}, ports: {{http: {external.port}}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: istio-egressgateway, namespace: istio-system}}
spec:
  selector: {{istio: egressgateway}}
  ports: [{{name: http, port: 8000}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: istio-egressgateway, namespace: istio-system}}
spec:
  address: {gw_ip}
  labels: {{istio: egressgateway}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: istio-egressgateway, namespace: default}}
spec:
  selector: {{istio: egressgateway}}
  servers:
  - port: {{number: 8000, name: http, protocol: HTTP}}
    hosts: [external.example.com]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: egressgateway-for-external, namespace: default}}
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets: [{{name: external}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: direct-external-through-egress-gateway, namespace: default}}
spec:
  hosts: [external.example.com]
  gateways: [istio-egressgateway, mesh]
  http:
  - match: [{{gateways: [mesh], port: 8000}}]
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        subset: external
        port: {{number: 8000}}
      weight: 100
  - match: [{{gateways: [istio-egressgateway], port: 8000}}]
    route:
    - destination: {{host: external.example.com, port: {{number: 8000}}}}
      weight: 100
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: client, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: client}}}}
  egress:
  - port: {{number: 8000, protocol: HTTP, name: http}}
    bind: {client_bind}
    captureMode: NONE
    hosts: ["*/*"]
"""


def test_egress_through_egress_gateway(mesh: Mesh, upstreams: UpstreamFactory) -> None:
    external = upstreams.http("external")
    gw_ip, client_bind = allocate_ip(), allocate_ip()
    mesh.write("egress.yaml", egress_config(external, gw_ip, client_bind))
    mesh.start()
    gw = mesh.gateway("egressgateway", ip=gw_ip, namespace="istio-system", labels={"istio": "egressgateway"})
    client = mesh.sidecar("client", labels={"app": "client"})
    mesh.wait_listener(gw, f"{gw_ip}_8000")
    mesh.wait_listener(client, f"{client_bind}_8000")

    def call() -> int:
        return http_request(client_bind, 8000, "/egress", host="external.example.com").status

    mesh.wait(lambda: call() == 200, 10, "a 200 through the egress gateway")
    before = external.state.count("/egress")
    assert call() == 200
    assert external.state.count("/egress") == before + 1
    # The request left the client sidecar toward the egress gateway subset ...
    sub = "cluster.outbound|8000|external|istio-egressgateway.istio-system.svc.cluster.local.upstream_rq_2xx"
    assert client.stat(sub) >= 2
    # ... and passed the gateway, which sent it to the external host.
    assert gw.stat(f"http.outbound_{gw_ip}_8000.downstream_rq_2xx") >= 2
    assert gw.stat("cluster.outbound|8000||external.example.com.upstream_rq_2xx") >= 2
    mesh.wait_synced()
