"""Mutual TLS between sidecars end to end: the control plane with its CA, sidecars
run by `istiod-py agent` (workload certificates over SDS), real Envoy, real
upstream apps. Assertions are on traffic: the peer identity the server app sees,
plaintext refused or accepted by PeerAuthentication, auto mTLS falling back to
plaintext, rotation under load, and a control-plane restart."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.envoy import EnvoyFactory
from tests.support.mesh import AgentSidecar, Mesh
from tests.support.net import allocate_ip
from tests.support.upstreams import HttpEchoServer, HttpSession, Response, UpstreamFactory, http_request

pytestmark = pytest.mark.e2e

TD = "cluster.local"
CLIENT_SA = "client-sa"
SERVER_SA = "server-sa"


def spiffe(sa: str) -> str:
    return f"spiffe://{TD}/ns/default/sa/{sa}"


@dataclass
class Setup:
    mesh: Mesh
    app: HttpEchoServer
    legacy: HttpEchoServer
    server_ip: str
    client_bind: str
    client2_bind: str


def config(app: HttpEchoServer, legacy: HttpEchoServer, server_ip: str, binds: tuple[str, str, str]) -> str:
    client_bind, client2_bind, server_bind = binds
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: server, namespace: default}}
spec:
  selector: {{app: server}}
  ports: [{{name: http, port: 9080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: legacy, namespace: default}}
spec:
  selector: {{app: legacy}}
  ports: [{{name: http, port: 9080}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: server-1, namespace: default}}
spec:
  address: {server_ip}
  serviceAccount: {SERVER_SA}
  labels: {{app: server, security.istio.io/tlsMode: istio}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: legacy-1, namespace: default}}
spec:
  address: {legacy.host}
  ports: {{http: {legacy.port}}}
  labels: {{app: legacy}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: server, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: server}}}}
  ingress:
  - port: {{number: 9080, protocol: HTTP, name: http}}
    defaultEndpoint: {app.host}:{app.port}
  egress:
  - port: {{number: 9080, protocol: HTTP, name: http}}
    bind: {server_bind}
    hosts: ["./*"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: client, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: client}}}}
  egress:
  - port: {{number: 9080, protocol: HTTP, name: http}}
    bind: {client_bind}
    hosts: ["./*"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: client2, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: client2}}}}
  egress:
  - port: {{number: 9080, protocol: HTTP, name: http}}
    bind: {client2_bind}
    hosts: ["./*"]
"""


STRICT = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
"""

# A new upstream connection (so a new TLS handshake) for every request.
ONE_REQUEST_PER_CONNECTION = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: server, namespace: default}
spec:
  host: server
  trafficPolicy: {connectionPool: {http: {maxRequestsPerConnection: 1}}}
"""


@pytest.fixture
def setup(tmp_path: Path, envoy_factory: EnvoyFactory, upstreams: UpstreamFactory) -> Iterator[Setup]:
    mesh = Mesh(tmp_path, envoy_factory)
    app = upstreams.http("server-app")
    legacy = upstreams.http("legacy-app")
    server_ip, client_bind, client2_bind = allocate_ip(), allocate_ip(), allocate_ip()
    mesh.write("mesh.yaml", config(app, legacy, server_ip, (client_bind, client2_bind, allocate_ip())))
    mesh.start_with_ca()
    yield Setup(mesh, app, legacy, server_ip, client_bind, client2_bind)
    mesh.stop()


def start_pair(s: Setup, **agent_kw: float) -> tuple[AgentSidecar, AgentSidecar]:
    server = s.mesh.agent_sidecar(
        "server", ip=s.server_ip, labels={"app": "server"}, service_account=SERVER_SA, **agent_kw
    )
    client = s.mesh.agent_sidecar("client", labels={"app": "client"}, service_account=CLIENT_SA, **agent_kw)
    s.mesh.wait_listener(server, f"{s.server_ip}_9080", 15)
    s.mesh.wait_listener(client, f"{s.client_bind}_9080", 15)
    return server, client


def via(bind: str, host: str = "server", session: HttpSession | None = None) -> Response:
    if session is not None:
        return session.request("/", host=f"{host}:9080")
    return http_request(bind, 9080, "/", host=f"{host}:9080")


def xfcc(r: Response) -> str:
    assert r.status == 200, (r.status, r.text[:300])
    return str(r.json()["headers"].get("x-forwarded-client-cert", ""))


def plaintext_ok(s: Setup) -> bool:
    """A client without a sidecar, straight to the server sidecar's inbound."""
    try:
        return http_request(s.server_ip, 9080, "/", host="server:9080", timeout=2).status == 200
    except OSError:
        return False


def plaintext_refused(s: Setup) -> bool:
    """True when the connection itself is dropped (no filter chain takes plaintext)."""
    try:
        http_request(s.server_ip, 9080, "/", host="server:9080", timeout=2)
    except OSError:
        return True
    return False


def test_mtls_identity_strict_permissive_and_auto_mtls(setup: Setup) -> None:
    s = setup
    server, client = start_pair(s)
    s.mesh.wait(lambda: via(s.client_bind).status == 200, 15, "a 200 from client to server")

    # The server app sees the client's SPIFFE identity, put there by the server sidecar.
    header = xfcc(via(s.client_bind))
    assert f"URI={spiffe(CLIENT_SA)}" in header, header
    assert f"By={spiffe(SERVER_SA)}" in header, header
    assert server.stat(f"listener.{s.server_ip}_9080.ssl.handshake") >= 1
    assert client.stat("cluster.outbound|9080||server.default.svc.cluster.local.ssl.handshake") >= 1

    # PERMISSIVE (the default): a plaintext client is served, without a peer identity.
    assert plaintext_ok(s)
    last = s.app.state.last
    assert last is not None and last.header("x-forwarded-client-cert") is None

    # Auto mTLS to a workload without a sidecar (no tlsMode label): plaintext, and it works.
    r = via(s.client_bind, host="legacy")
    assert r.status == 200 and r.json()["server"] == "legacy-app"
    assert xfcc(r) == ""
    assert client.stat("cluster.outbound|9080||legacy.default.svc.cluster.local.ssl.handshake") == 0

    # STRICT: plaintext is refused; mTLS keeps working.
    s.mesh.write("strict.yaml", STRICT)
    s.mesh.wait(lambda: plaintext_refused(s), 15, "plaintext refused under STRICT")
    assert server.stat(f"listener.{s.server_ip}_9080.no_filter_chain_match") >= 1
    assert f"URI={spiffe(CLIENT_SA)}" in xfcc(via(s.client_bind))
    assert via(s.client_bind, host="legacy").status == 200  # still plaintext to the sidecar-less workload

    # Back to PERMISSIVE: plaintext accepted again.
    s.mesh.remove("strict.yaml")
    s.mesh.wait(lambda: plaintext_ok(s), 15, "plaintext accepted again under PERMISSIVE")
    s.mesh.wait_synced()


def test_certificate_rotation_under_steady_traffic(setup: Setup) -> None:
    s = setup
    s.mesh.write("dr.yaml", ONE_REQUEST_PER_CONNECTION)
    s.mesh.write("strict.yaml", STRICT)
    server, client = start_pair(s, cert_ttl=20, rotation_fraction=0.5)
    s.mesh.wait(lambda: via(s.client_bind).status == 200, 15, "a 200 from client to server")
    failures: list[str] = []
    hashes: set[str] = set()
    sent = 0
    end = time.monotonic() + 15
    while time.monotonic() < end:
        sent += 1
        try:
            r = via(s.client_bind)
            if r.status != 200:
                failures.append(f"status {r.status}: {r.text[:200]}")
                continue
            m = re.search(r"Hash=([0-9a-f]+)", xfcc(r))
            if m:
                hashes.add(m.group(1))
        except OSError as e:
            failures.append(repr(e))
        time.sleep(0.02)
    assert not failures, f"{len(failures)} of {sent} requests failed: {failures[:5]}"
    # Both agents rotated (SDS pushed a second `default`), and handshakes used the
    # client's new certificate (a second client-cert hash reached the app).
    assert server.stat("sds.default.update_success") >= 2
    assert client.stat("sds.default.update_success") >= 2
    assert len(hashes) >= 2, hashes
    assert sent > 100


def test_control_plane_restart_keeps_root_and_connections(setup: Setup) -> None:
    s = setup
    server, client = start_pair(s)
    s.mesh.wait(lambda: via(s.client_bind).status == 200, 15, "a 200 from client to server")
    root = s.mesh.root_cert.read_bytes()
    with HttpSession(s.client_bind, 9080) as session:
        assert via(s.client_bind, session=session).status == 200
        s.mesh.stop()
        # Without the control plane, the open connection (and Envoy's upstream mTLS) still serves.
        assert via(s.client_bind, session=session).status == 200
        s.mesh.start_with_ca()
        assert s.mesh.root_cert.read_bytes() == root  # the CA kept its root
        assert via(s.client_bind, session=session).status == 200
        # A workload certified by the restarted CA is trusted by the old server.
        client2 = s.mesh.agent_sidecar("client2", labels={"app": "client2"}, service_account="client2-sa")
        s.mesh.wait_listener(client2, f"{s.client2_bind}_9080", 15)
        s.mesh.wait(lambda: via(s.client2_bind).status == 200, 15, "a 200 from the new client")
        assert f"URI={spiffe('client2-sa')}" in xfcc(via(s.client2_bind))
        assert via(s.client_bind, session=session).status == 200
    s.mesh.wait_synced(15)
    assert server.is_running() and client.is_running()
