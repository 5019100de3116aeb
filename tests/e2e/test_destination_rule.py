"""DestinationRule trafficPolicy end to end: the real control plane on files, a
real Envoy client sidecar, real upstream servers; assertions on traffic.

Each test: backend service (port 9080, HTTP) with WorkloadEntries on real echo
servers; the client sidecar's egress binds 9080 on its own loopback address."""

from __future__ import annotations

import concurrent.futures
import datetime
import ssl
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from istiod_py.agent.bootstrap import BootstrapOptions, build_bootstrap
from tests.support.envoy import EnvoyFactory, EnvoyProcess, admin_address
from tests.support.mesh import Mesh
from tests.support.net import allocate_ip
from tests.support.upstreams import HttpEchoServer, UpstreamFactory, _EchoHandler, _EchoHTTPServer, http_request

HOST = "backend.default.svc.cluster.local"
CLUSTER = f"outbound|9080||{HOST}"

SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: default}
spec:
  selector: {app: backend}
  ports:
  - {name: http, port: 9080}
"""


def workload(name: str, up: HttpEchoServer, version: str = "v1", locality: str = "") -> str:
    loc = f"\n  locality: {locality}" if locality else ""
    return f"""
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: default}}
spec:
  address: {up.host}
  ports: {{http: {up.port}}}
  labels: {{app: backend, version: {version}}}{loc}
"""


def client_sidecar(bind: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: client, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: client}}}}
  egress:
  - port: {{number: 9080, protocol: HTTP, name: http}}
    bind: {bind}
    captureMode: NONE
    hosts: ["./*"]
"""


def destination_rule(spec: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: backend, namespace: default}}
spec:
  host: backend
{spec}
"""


@pytest.fixture
def mesh(tmp_path: Path, envoy_factory: EnvoyFactory) -> Iterator[Mesh]:
    m = Mesh(tmp_path, envoy_factory)
    yield m
    m.stop()


def start(mesh: Mesh, workloads: list[str], dr: str, *, locality: str = "") -> tuple[EnvoyProcess, str]:
    """Write config, start the control plane and a client sidecar (in `locality`)."""
    bind = allocate_ip()
    mesh.write("services.yaml", SERVICES)
    mesh.write("workloads.yaml", "\n---\n".join(workloads))
    mesh.write("client.yaml", client_sidecar(bind))
    mesh.write("dr.yaml", dr)
    mesh.start()
    ip = allocate_ip()
    admin_host, admin_port = admin_address()
    opts = BootstrapOptions(
        ip=ip,
        name="client",
        labels={"app": "client"},
        interception_mode="NONE",
        discovery_address=f"{mesh.host}:{mesh.xds_port}",
        admin_address=admin_host,
        admin_port=admin_port,
        extra_metadata={"LOCALITY": locality} if locality else {},
    )
    sc = mesh.envoys(build_bootstrap(opts), name="client")
    mesh.wait_listener(sc, f"{bind}_9080")
    mesh.wait(lambda: call(bind).status == 200, 10, "a first 200 through the sidecar")
    return sc, bind


def call(bind: str, headers: dict[str, str] | None = None) -> Any:
    return http_request(bind, 9080, "/", host="backend:9080", headers=headers)


def servers_hit(bind: str, n: int, headers: dict[str, str] | None = None) -> list[str]:
    out = []
    for _ in range(n):
        r = call(bind, headers)
        out.append(r.json()["server"] if r.status == 200 else str(r.status))
    return out


def cluster_config(sc: EnvoyProcess, name: str) -> dict[str, Any]:
    for entry in sc.dynamic_resources("ClustersConfigDump"):
        if entry["cluster"]["name"] == name:
            return dict(entry["cluster"])
    raise AssertionError(f"no cluster {name} on {sc.name}")


# --- outlier detection -----------------------------------------------------------------------


def test_outlier_ejection_moves_traffic_to_the_healthy_endpoint(mesh: Mesh, upstreams: UpstreamFactory) -> None:
    good, bad = upstreams.http("good"), upstreams.http("bad")
    dr = destination_rule("""
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100}
""")
    sc, bind = start(mesh, [workload("good", good), workload("bad", bad)], dr)
    bad.state.fixed_status(503)
    # Until the bad host answers once, it is in rotation; one 503 ejects it. (The
    # default retry policy hides its 503s from the client, so wait on Envoy's
    # own count of ejections, not only on what the client sees.)
    ejected = f"cluster.{CLUSTER}.outlier_detection.ejections_enforced_total"
    mesh.wait(
        lambda: set(servers_hit(bind, 4)) == {"good"} and bad.state.count() >= 1 and sc.stat(ejected) >= 1,
        15,
        "bad ejected",
    )
    seen_by_bad = bad.state.count()
    assert servers_hit(bind, 20) == ["good"] * 20
    assert bad.state.count() == seen_by_bad  # ejected: no request reached it


# --- connection pool ----------------------------------------------------------------------------


def test_connection_pool_overflow_gives_503(mesh: Mesh, upstreams: UpstreamFactory) -> None:
    slow = upstreams.http("slow")
    dr = destination_rule("""
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 0}
""")
    sc, bind = start(mesh, [workload("slow", slow)], dr)
    thresholds = cluster_config(sc, CLUSTER)["circuit_breakers"]["thresholds"][0]
    assert thresholds["max_connections"] == 1 and thresholds["max_pending_requests"] == 1
    slow.state.delay(1.0)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: call(bind), range(6)))
    statuses = Counter(r.status for r in results)
    overflowed = [r for r in results if r.status == 503]
    assert statuses[200] >= 1, statuses
    assert overflowed, statuses
    assert all(r.headers.get("x-envoy-overloaded") == "true" for r in overflowed)
    assert sc.stat(f"cluster.{CLUSTER}.upstream_rq_pending_overflow") >= len(overflowed)


# --- load balancing -------------------------------------------------------------------------------


def test_consistent_hash_sticks_per_header_value(mesh: Mesh, upstreams: UpstreamFactory) -> None:
    ups = [upstreams.http(f"b{i}") for i in range(3)]
    dr = destination_rule("""
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpHeaderName: x-user, ringHash: {minimumRingSize: 128}}
""")
    sc, bind = start(mesh, [workload(u.state.name, u) for u in ups], dr)
    mesh.wait(lambda: len(sc.cluster_hosts(CLUSTER)) == 3, 10, "three hosts")
    assert cluster_config(sc, CLUSTER)["lb_policy"] == "RING_HASH"
    chosen = {}
    for user in (f"user-{i}" for i in range(8)):
        hits = set(servers_hit(bind, 20, {"x-user": user}))
        assert len(hits) == 1, (user, hits)
        chosen[user] = hits.pop()
    assert len(set(chosen.values())) > 1, chosen


def test_least_request_and_random_are_accepted_and_serve(mesh: Mesh, upstreams: UpstreamFactory) -> None:
    a, b = upstreams.http("a"), upstreams.http("b")
    dr = destination_rule("""
  trafficPolicy:
    loadBalancer: {simple: RANDOM}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST, warmupDurationSecs: 1s}}
""")
    sc, bind = start(mesh, [workload("a", a, "v1"), workload("b", b, "v2")], dr)
    mesh.wait(lambda: len(sc.cluster_hosts(CLUSTER)) == 2, 10, "two hosts")
    assert cluster_config(sc, CLUSTER)["lb_policy"] == "RANDOM"
    v1 = cluster_config(sc, f"outbound|9080|v1|{HOST}")
    assert v1["lb_policy"] == "LEAST_REQUEST" and "slow_start_config" in v1["least_request_lb_config"]
    assert set(servers_hit(bind, 30)) == {"a", "b"}


# --- locality failover --------------------------------------------------------------------------


def test_locality_failover_to_the_next_locality(mesh: Mesh, upstreams: UpstreamFactory) -> None:
    near, far = upstreams.http("near"), upstreams.http("far")
    dr = destination_rule("""
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100}
""")
    workloads = [workload("near", near, locality="region-a/zone-1"), workload("far", far, locality="region-b/zone-2")]
    _, bind = start(mesh, workloads, dr, locality="region-a/zone-1")
    # Healthy: every request stays in the client's own locality (priority 0).
    mesh.wait(lambda: set(servers_hit(bind, 10)) == {"near"}, 10, "traffic on the same locality")
    assert far.state.count() == 0
    near.state.fixed_status(503)
    mesh.wait(lambda: set(servers_hit(bind, 4)) == {"far"}, 10, "failover to the other locality")
    assert servers_hit(bind, 10) == ["far"] * 10


# --- TLS origination --------------------------------------------------------------------------


def _make_certs(tmp: Path, san: str) -> tuple[Path, Path, Path]:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, san)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = tmp / "ca.pem", tmp / "server.pem", tmp / "server.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_path, cert_path, key_path


class TlsEchoServer(HttpEchoServer):
    """The HTTP/1.1 echo server behind TLS (server certificate from files)."""

    protocol = "https"

    def __init__(self, name: str, cert: Path, key: Path) -> None:
        super().__init__(name)
        self.ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ssl_context.load_cert_chain(str(cert), str(key))
        self.sni_seen: list[str | None] = []

        def record_sni(sock: ssl.SSLSocket, server_name: str | None, _ctx: ssl.SSLContext) -> None:
            self.sni_seen.append(server_name)

        self.ssl_context.sni_callback = record_sni  # type: ignore[assignment]

    def _start(self) -> None:
        server = _EchoHTTPServer((self.host, self.port), _EchoHandler)
        server.socket = self.ssl_context.wrap_socket(server.socket, server_side=True)
        server.state = self.state
        server.open_sockets = set()
        server.sockets_lock = threading.Lock()
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()


def test_tls_simple_origination_to_a_tls_upstream(mesh: Mesh, upstreams: UpstreamFactory, tmp_path: Path) -> None:
    ca, cert, key = _make_certs(tmp_path, "backend.example")
    tls_up = TlsEchoServer("tls-backend", cert, key)
    tls_up.start()
    try:
        dr = destination_rule(f"""
  trafficPolicy:
    tls: {{mode: SIMPLE, caCertificates: {ca}, sni: backend.example, subjectAltNames: [backend.example]}}
""")
        sc, bind = start(mesh, [workload("tls", tls_up)], dr)
        r = call(bind)
        assert r.status == 200 and r.json()["server"] == "tls-backend"
        assert "backend.example" in tls_up.sni_seen
        assert sc.stat(f"cluster.{CLUSTER}.ssl.handshake") >= 1
        # A SAN the certificate does not have: Envoy refuses the upstream.
        mesh.write("dr.yaml", dr.replace("subjectAltNames: [backend.example]", "subjectAltNames: [other.example]"))
        mesh.wait(lambda: call(bind).status == 503, 10, "503 after the SAN no longer matches")
    finally:
        tls_up.stop()
