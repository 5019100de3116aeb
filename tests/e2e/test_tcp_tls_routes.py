"""VirtualService `tcp` and `tls` routes through a real client sidecar to real
upstreams: a TCP weight split and a move to one subset, and SNI routing between
TLS services on one port (the sidecar routes by SNI without terminating; the
client checks the server certificate it gets)."""

from __future__ import annotations

import asyncio
import datetime
import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from google.protobuf import json_format

from istiod_py.translate.generate import Translator
from istiod_py.xds.types import TypeUrl
from tests.support.envoy import EnvoyFactory, envoy_binary
from tests.support.mesh import Mesh
from tests.support.net import allocate_ip, free_port
from tests.support.upstreams import LoopThread, UpstreamFactory, http_request, tcp_echo
from tests.unit.test_tcp_tls_routes import ADDRESSED, SUBSETS, client, sidecar, state_of, svc, tls_entry


@pytest.fixture
def mesh(tmp_path: Path, envoy_factory: EnvoyFactory) -> Iterator[Mesh]:
    m = Mesh(tmp_path, envoy_factory)
    yield m
    m.stop()


def client_sidecar(bind: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: client, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: client}}}}
  egress:
  - bind: {bind}
    hosts: ["*/*"]
"""


# --- TCP ------------------------------------------------------------------------------------------

DB_PORT = 9300


def tcp_mesh(v1: tuple[str, int], v2: tuple[str, int], bind: str, route: str) -> str:
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: db, namespace: default}}
spec:
  selector: {{app: db}}
  ports: [{{name: tcp-db, port: {DB_PORT}}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: db-v1, namespace: default}}
spec: {{address: {v1[0]}, labels: {{app: db, version: v1}}, ports: {{tcp-db: {v1[1]}}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: db-v2, namespace: default}}
spec: {{address: {v2[0]}, labels: {{app: db, version: v2}}, ports: {{tcp-db: {v2[1]}}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: db, namespace: default}}
spec:
  host: db
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: db, namespace: default}}
spec:
  hosts: [db]
  tcp:
  - route:
{route}
---
{client_sidecar(bind)}
"""


SPLIT = """\
    - {destination: {host: db, subset: v1}, weight: 50}
    - {destination: {host: db, subset: v2}, weight: 50}"""
ONLY_V2 = """\
    - {destination: {host: db, subset: v2}}"""


def test_tcp_weight_split_then_one_subset(mesh: Mesh, upstreams: UpstreamFactory) -> None:
    v1 = upstreams.tcp("db-v1")
    v2 = upstreams.tcp("db-v2")
    bind = allocate_ip()
    mesh.write("mesh.yaml", tcp_mesh((v1.host, v1.port), (v2.host, v2.port), bind, SPLIT))
    mesh.start()
    sc = mesh.sidecar("client", labels={"app": "client"})
    mesh.wait_listener(sc, f"{bind}_{DB_PORT}")
    # both subsets have endpoints before counting
    mesh.wait(lambda: "db-v1" in tcp_echo(bind, DB_PORT, "x"), 10, "v1 reachable")
    mesh.wait(lambda: "db-v2" in tcp_echo(bind, DB_PORT, "x"), 10, "v2 reachable")

    n = 200
    counts = {"db-v1": 0, "db-v2": 0}
    for i in range(n):
        counts[tcp_echo(bind, DB_PORT, f"c{i}").split(":")[0]] += 1
    # Binomial(200, 0.5): sd = 7.07; 4 sigma = 28.3
    assert abs(counts["db-v1"] - n / 2) <= 28.3, counts
    assert counts["db-v1"] + counts["db-v2"] == n

    mesh.write("mesh.yaml", tcp_mesh((v1.host, v1.port), (v2.host, v2.port), bind, ONLY_V2))

    def only_v2() -> bool:
        return all(tcp_echo(bind, DB_PORT, "y").startswith("db-v2:") for _ in range(20))

    mesh.wait(only_v2, 10, "every connection to subset v2")
    before = v1.connections
    assert all(tcp_echo(bind, DB_PORT, f"z{i}").startswith("db-v2:") for i in range(50))
    assert v1.connections == before
    assert "outbound|9300|v2|db.default.svc.cluster.local" in json.dumps(sc.config_dump())


# --- TLS ------------------------------------------------------------------------------------------


class Pki:
    """A throwaway CA and leaf certificates for TLS upstreams."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.ca_path = workdir / "ca.pem"
        self.ca_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def leaf(self, name: str, dns_names: list[str]) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns_names]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        cert_path, key_path = self.workdir / f"{name}.pem", self.workdir / f"{name}-key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return cert_path, key_path


class TlsEchoServer:
    """Line echo over TLS: each line ``x`` is answered with ``"<name>: x"``."""

    def __init__(self, name: str, cert: Path, key: Path) -> None:
        self.name = name
        self.host = allocate_ip()
        self.port = free_port(self.host)
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(cert, key)
        self.sni: list[str | None] = []
        self._lock = threading.Lock()
        self.ctx.sni_callback = self._on_sni
        self._loop = LoopThread(f"tls-{name}")
        self._server: asyncio.Server | None = None

    def _on_sni(self, _sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        with self._lock:
            self.sni.append(name)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(self.name.encode() + b": " + line.rstrip(b"\r\n") + b"\n")
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    def start(self) -> TlsEchoServer:
        async def serve() -> asyncio.Server:
            return await asyncio.start_server(self._handle, self.host, self.port, ssl=self.ctx)

        self._server = self._loop.run(serve())
        return self

    def stop(self) -> None:
        server = self._server
        if server is not None:

            async def close() -> None:
                server.close()

            self._loop.run(close(), timeout=5)
        self._loop.close()


def tls_exchange(addr: str, port: int, sni: str, ca: Path, line: str = "hello") -> tuple[str, list[str]]:
    """TLS to addr:port with `sni`, verifying the chain and the name against it;
    returns the reply and the DNS names of the certificate the client got."""
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection((addr, port), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=sni) as tls:
        cert = tls.getpeercert()
        names = [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]
        tls.sendall(line.encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = tls.recv(4096)
            if not chunk:
                break
            buf += chunk
        return buf.decode().strip(), names


TLS_PORT = 9443


def tls_mesh(a: TlsEchoServer, b: TlsEchoServer, bind: str) -> str:
    def entry(name: str, host: str, srv: TlsEchoServer) -> str:
        return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{host}]
  location: MESH_EXTERNAL
  ports: [{{number: {TLS_PORT}, name: tls, protocol: TLS}}]
  resolution: STATIC
  endpoints: [{{address: {srv.host}, ports: {{tls: {srv.port}}}}}]
"""

    vs = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: b, namespace: default}
spec:
  hosts: [b.tls.test]
  tls:
  - match: [{sniHosts: [b.tls.test, alias.tls.test]}]
    route: [{destination: {host: b.tls.test}}]
"""
    return "---".join([entry("a", "a.tls.test", a), entry("b", "b.tls.test", b), vs, client_sidecar(bind)])


def test_sni_routing_between_tls_services_on_one_port(mesh: Mesh, tmp_path: Path, upstreams: UpstreamFactory) -> None:
    pki = Pki(tmp_path)
    a = TlsEchoServer("tls-a", *pki.leaf("a", ["a.tls.test"])).start()
    b = TlsEchoServer("tls-b", *pki.leaf("b", ["b.tls.test", "alias.tls.test"])).start()
    try:
        bind = allocate_ip()
        mesh.write("mesh.yaml", tls_mesh(a, b, bind))
        mesh.start()
        sc = mesh.sidecar("client", labels={"app": "client"})
        mesh.wait_listener(sc, f"{bind}_{TLS_PORT}")

        reply, names = mesh.wait(lambda: tls_exchange(bind, TLS_PORT, "a.tls.test", pki.ca_path), 10, "TLS to a")
        assert reply == "tls-a: hello" and names == ["a.tls.test"]
        reply, names = tls_exchange(bind, TLS_PORT, "b.tls.test", pki.ca_path, "two")
        assert reply == "tls-b: two" and names == ["b.tls.test", "alias.tls.test"]
        # a VirtualService tls route: another SNI to b
        reply, _ = tls_exchange(bind, TLS_PORT, "alias.tls.test", pki.ca_path, "three")
        assert reply == "tls-b: three"
        for _ in range(5):
            assert tls_exchange(bind, TLS_PORT, "a.tls.test", pki.ca_path)[0] == "tls-a: hello"
        # The sidecar did not terminate TLS: the servers saw the client's own SNI.
        assert "a.tls.test" in a.sni and {"b.tls.test", "alias.tls.test"} <= set(b.sni)
        assert "alias.tls.test" not in a.sni
        assert sc.stat("cluster.outbound|9443||a.tls.test.upstream_cx_total") >= 6
    finally:
        a.stop()
        b.stop()


# --- HTTP and TCP services on one port: sniffing -----------------------------------------------------


def test_http_and_tcp_services_on_one_port_are_told_apart_by_sniffing(mesh: Mesh, upstreams: UpstreamFactory) -> None:
    web = upstreams.http("web-app")
    raw = upstreams.tcp("raw-app")
    bind = allocate_ip()
    docs = []
    for name, pname, up in (("web", "http-web", web), ("raw", "tcp-raw", raw)):
        docs.append(f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: {pname}, port: 7070}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: default}}
spec: {{address: {up.host}, labels: {{app: {name}}}, ports: {{{pname}: {up.port}}}}}
""")
    docs.append(client_sidecar(bind))
    mesh.write("mesh.yaml", "---".join(docs))
    mesh.start()
    sc = mesh.sidecar("client", labels={"app": "client"})
    mesh.wait_listener(sc, f"{bind}_7070")
    r = mesh.wait(lambda: http_request(bind, 7070, "/s", host="web:7070"), 10, "HTTP on the shared port")
    assert r.status == 200 and r.json()["server"] == "web-app"
    # Not HTTP: the http_inspector hands it to the TCP chain.
    assert mesh.wait(lambda: tcp_echo(bind, 7070, "\x00binary"), 10, "TCP on the shared port") == (
        "raw-app: \x00binary"
    )


# --- Envoy accepts what the translator makes for the tricky cases ----------------------------------


def test_envoy_validates_merged_tcp_tls_and_sniffing_listeners(tmp_path: Path, envoy_bin: str) -> None:
    """Duplicate matches, prefix ranges, SNI chains and sniffing, as a static
    bootstrap through `envoy --mode validate` (the same check an ACK makes)."""
    docs = [
        ADDRESSED,
        SUBSETS,
        svc("db", 3306, "tcp"),
        svc("zeta", 3306, "tcp"),
        svc("web", 6000, "http"),
        tls_entry("a", "a.example.com", port=6000),
        tls_entry("b", "b.example.com", port=6000),
        tls_entry("c", "c.example.com", port=6000, addresses="240.0.3.3"),
        """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: dup, namespace: default}
spec:
  hosts: ["*.example.com", db]
  tls:
  - match: [{sniHosts: [a.example.com, "*"]}]
    route: [{destination: {host: b.example.com}, weight: 60}, {destination: {host: a.example.com}, weight: 40}]
  tcp:
  - match: [{destinationSubnets: [240.0.0.1/32, 10.0.0.0/8]}]
    route: [{destination: {host: db, subset: v1}}]
""",
    ]
    tr = Translator()
    for bind in ("127.0.0.1", "0.0.0.0"):
        state = state_of(*docs, sidecar(bind))
        proxy = client()
        listeners = [b.message() for b in tr.generate(state, proxy, TypeUrl.LISTENER).index.values()]
        clusters = [b.message() for b in tr.generate(state, proxy, TypeUrl.CLUSTER).index.values()]
        for c in clusters:  # a static bootstrap has no ADS: EDS clusters become STATIC
            if c.HasField("eds_cluster_config"):
                c.ClearField("eds_cluster_config")
                c.type = c.STATIC
        for lst in listeners:
            lst.ClearField("bind_to_port")
            for fc in lst.filter_chains:
                for f in fc.filters:  # RDS needs an ADS source: an empty inline route config
                    if f.name == "envoy.filters.network.http_connection_manager":
                        m = hcm.HttpConnectionManager()
                        f.typed_config.Unpack(m)
                        m.ClearField("rds")
                        m.route_config.name = "static"
                        f.typed_config.Pack(m)
        bootstrap = {
            "static_resources": {
                "listeners": [json_format.MessageToDict(x) for x in listeners],
                "clusters": [json_format.MessageToDict(x) for x in clusters],
            }
        }
        path = tmp_path / f"bootstrap-{bind}.json"
        path.write_text(json.dumps(bootstrap))
        r = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path)], capture_output=True, text=True,
                           timeout=60)  # fmt: skip
        assert r.returncode == 0, (bind, r.stdout[-3000:], r.stderr[-3000:])
