"""Issue 10, through real Envoy: for the same YAML, the same behaviour as istiod.

- a WorkloadEntry with only a serviceAccount is dialled with mTLS (the app sees
  the client's SPIFFE identity);
- the inbound route retries reset-before-request (config) and a request with a
  trailing-dot FQDN Host is routed;
- inbound mTLS refuses a certificate of another trust domain signed by the same
  root, and accepts it once the mesh lists that domain in trustDomainAliases;
- panic mode is off: with most endpoints ejected, Envoy keeps sending only to
  the healthy ones rather than spreading requests over the ejected hosts.

(The default retry policy not retrying a 503 is in test_virtual_service.py.)"""

from __future__ import annotations

import datetime
import http.client
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.configs import client_sidecar, docs, service, workload_entry, workload_sidecar
from tests.support.envoy import EnvoyFactory, EnvoyProcess
from tests.support.mesh import AgentSidecar, Mesh
from tests.support.net import allocate_ip
from tests.support.upstreams import HttpEchoServer, Response, UpstreamFactory, http_request

pytestmark = pytest.mark.e2e

SERVER_SA = "server-sa"
CLIENT_SA = "client-sa"
FQDN = "server.default.svc.cluster.local"


def mesh_yaml(app: HttpEchoServer, server_ip: str, client_bind: str) -> str:
    # The WorkloadEntry has a serviceAccount and NO security.istio.io/tlsMode label:
    # istiod treats it as mTLS-capable all the same.
    return docs(
        service("server"),
        workload_entry("server-1", server_ip, {"app": "server"}, service_account=SERVER_SA),
        """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: alias, namespace: default}
spec:
  hosts: [server-alias.internal]
  http:
  - route: [{destination: {host: server}}]""",
        """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: dns-local, namespace: default}
spec:
  hosts: [dns-local.example.internal]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{name: http, number: 9080, protocol: HTTP}]
  endpoints: [{address: localhost}]""",
        workload_sidecar("server", f"{app.host}:{app.port}", egress_hosts='["istio-system/*"]'),
        client_sidecar(client_bind),
    )


@dataclass
class Setup:
    mesh: Mesh
    app: HttpEchoServer
    server_ip: str
    client_bind: str
    tmp: Path


@pytest.fixture
def setup(tmp_path: Path, envoy_factory: EnvoyFactory, upstreams: UpstreamFactory) -> Iterator[Setup]:
    mesh = Mesh(tmp_path, envoy_factory)
    app = upstreams.http("server-app")
    server_ip, client_bind = allocate_ip(), allocate_ip()
    mesh.write("mesh.yaml", mesh_yaml(app, server_ip, client_bind))
    mesh.start_with_ca()
    yield Setup(mesh, app, server_ip, client_bind, tmp_path)
    mesh.stop()


def start_server(s: Setup) -> AgentSidecar:
    server = s.mesh.agent_sidecar("server", ip=s.server_ip, labels={"app": "server"}, service_account=SERVER_SA)
    s.mesh.wait_listener(server, f"{s.server_ip}_9080", 15)
    return server


def xfcc(r: Response) -> str:
    assert r.status == 200, (r.status, r.text[:300])
    return str(r.json()["headers"].get("x-forwarded-client-cert", ""))


def route_configs(envoy: EnvoyProcess) -> list[dict[str, Any]]:
    """Route configurations the proxy holds: RDS ones and inline ones in listeners."""
    out = [e["route_config"] for e in envoy.dynamic_resources("RoutesConfigDump")]
    for entry in envoy.dynamic_resources("ListenersConfigDump"):
        for chain in entry.get("active_state", {}).get("listener", {}).get("filter_chains", []):
            for f in chain.get("filters", []):
                rc = f.get("typed_config", {}).get("route_config")
                if rc:
                    out.append(rc)
    return out


# --- 1, 3, 4, 6: WorkloadEntry mTLS, inbound retry policy, trailing-dot Host ------------------


def test_workload_entry_with_service_account_gets_mtls_and_istiod_routing(setup: Setup) -> None:
    s = setup
    server = start_server(s)
    client = s.mesh.agent_sidecar("client", labels={"app": "client"}, service_account=CLIENT_SA)
    s.mesh.wait_listener(client, f"{s.client_bind}_9080", 15)
    s.mesh.wait(lambda: http_request(s.client_bind, 9080, "/", host="server:9080").status == 200, 15, "a 200")

    # 1. mTLS although the WorkloadEntry has no tlsMode label: the app sees the
    # client's identity in XFCC, and the client's cluster did TLS handshakes.
    header = xfcc(http_request(s.client_bind, 9080, "/", host="server:9080"))
    assert f"URI=spiffe://cluster.local/ns/default/sa/{CLIENT_SA}" in header, header
    assert client.stat(f"cluster.outbound|9080||{FQDN}.ssl.handshake") >= 1

    # 4. The trailing-dot FQDN (with or without a port) picks the service's virtual host.
    # A VirtualService host with no service of its own routes too (its own virtual host).
    for host in (f"{FQDN}.", f"{FQDN}.:9080", FQDN, "server", "server-alias.internal"):
        r = http_request(s.client_bind, 9080, "/dot", host=host)
        assert r.status == 200 and r.json()["server"] == "server-app", (host, r.status, r.text[:200])

    # 3. The server's inbound route retries a request reset before it reached the app.
    inbound = [rc for rc in route_configs(server) if rc.get("name") == "inbound|9080||"]
    assert inbound, [rc.get("name") for rc in route_configs(server)]
    policy = inbound[0]["virtual_hosts"][0]["routes"][0]["route"]["retry_policy"]
    assert policy == {"retry_on": "reset-before-request", "num_retries": 2}, policy

    # 7. istiod's DNS cluster settings (c-ares resolver, TTL, jitter) are accepted.
    dns = {e["cluster"]["name"]: e["cluster"] for e in client.dynamic_resources("ClustersConfigDump")}
    assert dns["outbound|9080||dns-local.example.internal"]["typed_dns_resolver_config"]["name"] == (
        "envoy.network.dns_resolver.cares"
    )

    # 6. InboundPassthroughCluster is accepted by Envoy (the capture listener uses it).
    clusters = {e["cluster"]["name"]: e["cluster"] for e in server.dynamic_resources("ClustersConfigDump")}
    ipc = clusters["InboundPassthroughCluster"]
    assert ipc["type"] == "ORIGINAL_DST"
    assert ipc["upstream_bind_config"]["source_address"]["address"] == "127.0.0.6"


# --- 5: inbound peer trust domain -------------------------------------------------------------


def mint_client_cert(s: Setup, spiffe_uri: str) -> tuple[Path, Path]:
    """A client certificate with SAN `spiffe_uri`, signed by the mesh's own root
    (the CA's root key on disk): it chains to the root the server trusts."""
    root_cert = x509.load_pem_x509_certificate(s.mesh.root_cert.read_bytes())
    root_key: Any = serialization.load_pem_private_key((s.mesh.ca_dir / "root-key.pem").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(root_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_uri)]),
            critical=True,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    name = spiffe_uri.split("//", 1)[1].split("/", 1)[0]
    cert_path, key_path = s.tmp / f"{name}-cert.pem", s.tmp / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def mtls_request(s: Setup, cert: tuple[Path, Path]) -> Response:
    """What a sidecar does: TLS with Istio's ALPN and the client certificate,
    straight to the server sidecar's inbound listener."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # the server's certificate carries a SPIFFE URI, no DNS name
    ctx.load_verify_locations(str(s.mesh.root_cert))
    ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    ctx.set_alpn_protocols(["istio", "http/1.1"])
    conn = http.client.HTTPSConnection(s.server_ip, 9080, context=ctx, timeout=5)
    try:
        return http_request(s.server_ip, 9080, "/", host="server:9080", connection=conn)
    finally:
        conn.close()


def refused(s: Setup, cert: tuple[Path, Path]) -> bool:
    try:
        mtls_request(s, cert)
    except OSError:  # ssl.SSLError, reset: the handshake failed
        return True
    return False


def test_inbound_refuses_another_trust_domain_unless_aliased(setup: Setup) -> None:
    s = setup
    server = start_server(s)
    ours = mint_client_cert(s, "spiffe://cluster.local/ns/default/sa/sleep")
    other = mint_client_cert(s, "spiffe://other.example/ns/default/sa/sleep")
    s.mesh.wait(lambda: mtls_request(s, ours).status == 200, 15, "mTLS with a mesh certificate")
    assert "URI=spiffe://cluster.local/ns/default/sa/sleep" in xfcc(mtls_request(s, ours))

    # Same root, another trust domain: the handshake fails on the SAN check.
    assert refused(s, other)
    assert server.stat(f"listener.{s.server_ip}_9080.ssl.fail_verify_san") >= 1
    seen = s.app.state.count()

    # The mesh now accepts other.example as an alias of its trust domain.
    s.mesh.stop()
    s.mesh.mesh_config = {"trustDomainAliases": ["other.example"]}
    s.mesh.start_with_ca()
    s.mesh.wait(lambda: not refused(s, other), 20, "the aliased trust domain accepted")
    assert "URI=spiffe://other.example/ns/default/sa/sleep" in xfcc(mtls_request(s, other))
    assert s.app.state.count() > seen
    assert mtls_request(s, ours).status == 200  # the mesh's own domain still works


# --- 2: panic mode off --------------------------------------------------------------------


def slices_yaml(endpoints: list[tuple[HttpEchoServer, bool]], bind: str) -> str:
    """A Kubernetes Service whose EndpointSlices list each upstream, ready or not
    (one slice per upstream: each listens on its own port). No DestinationRule:
    the panic threshold under test is the default one."""
    slices = "".join(
        f"""
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: backend-{up.state.name}, namespace: default, labels: {{kubernetes.io/service-name: backend}}}}
addressType: IPv4
ports: [{{name: http, port: {up.port}, protocol: TCP}}]
endpoints:
- addresses: [{up.host}]
  conditions: {{ready: {str(ready).lower()}}}
"""
        for up, ready in endpoints
    )
    return docs(service("backend"), client_sidecar(bind)) + slices


def test_panic_mode_off_not_ready_endpoints_get_no_traffic(
    tmp_path: Path, envoy_factory: EnvoyFactory, upstreams: UpstreamFactory
) -> None:
    """Two of three endpoints not ready (33 % healthy, under Envoy's default 50 %
    panic threshold): as under istiod 1.31, Envoy is not in panic and sends every
    request to the ready endpoint. With none ready, Envoy answers 503 itself
    ("no healthy upstream") instead of sending requests to not-ready hosts."""
    good = upstreams.http("good")
    bad = [upstreams.http("not-ready-0"), upstreams.http("not-ready-1")]
    bind = allocate_ip()
    cluster = "outbound|9080||backend.default.svc.cluster.local"
    mesh = Mesh(tmp_path, envoy_factory)
    mesh.write("mesh.yaml", slices_yaml([(good, True), (bad[0], False), (bad[1], False)], bind))
    mesh.start()
    try:
        sc = mesh.sidecar("client", labels={"app": "client"})
        mesh.wait_listener(sc, f"{bind}_9080")
        mesh.wait(lambda: http_request(bind, 9080, "/", host="backend:9080").status == 200, 10, "a first 200")
        answers = [http_request(bind, 9080, "/", host="backend:9080") for _ in range(30)]
        assert [r.status for r in answers] == [200] * 30
        assert {r.json()["server"] for r in answers} == {"good"}
        assert [up.state.count() for up in bad] == [0, 0]
        assert sc.stat(f"cluster.{cluster}.lb_healthy_panic") == 0

        # No endpoint ready: 503 from Envoy, nothing sent upstream.
        mesh.write("mesh.yaml", slices_yaml([(good, False), (bad[0], False), (bad[1], False)], bind))
        mesh.wait(
            lambda: http_request(bind, 9080, "/", host="backend:9080").text == "no healthy upstream",
            10,
            "no healthy upstream",
        )
        seen = good.state.count()
        answers = [http_request(bind, 9080, "/", host="backend:9080") for _ in range(20)]
        assert {(r.status, r.text) for r in answers} == {(503, "no healthy upstream")}
        assert good.state.count() == seen and [up.state.count() for up in bad] == [0, 0]
        assert sc.stat(f"cluster.{cluster}.upstream_cx_none_healthy") >= 20
        assert sc.stat(f"cluster.{cluster}.lb_healthy_panic") == 0
    finally:
        mesh.stop()
