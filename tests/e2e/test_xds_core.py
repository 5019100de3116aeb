"""The xDS core end to end: the real control plane on files, real Envoy sidecars
(SotW and Delta), real upstream servers; assertions on traffic."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.configs import client_sidecar, docs, route_to, service, subsets, workload_entry, workload_sidecar
from tests.support.envoy import EnvoyFactory, EnvoyProcess
from tests.support.mesh import Mesh
from tests.support.net import allocate_ip
from tests.support.upstreams import HttpEchoServer, UpstreamFactory, http_request
from tests.support.upstreams import servers_hit as _servers_hit


def workload(name: str, up: HttpEchoServer, version: str) -> str:
    return workload_entry(name, up.host, {"app": "backend", "version": version}, ports={"http": up.port})


def servers_hit(bind: str, n: int, host: str = "backend:9080") -> list[str]:
    return _servers_hit(bind, n, host)


@pytest.fixture(params=["sotw", "delta"])
def mesh(request: pytest.FixtureRequest, tmp_path: Path, envoy_factory: EnvoyFactory) -> Iterator[Mesh]:
    m = Mesh(tmp_path, envoy_factory, delta=request.param == "delta")
    yield m
    m.stop()


def start_client(mesh: Mesh) -> tuple[EnvoyProcess, str]:
    sc = mesh.sidecar("client", labels={"app": "client"})
    bind = mesh.bind  # type: ignore[attr-defined]
    mesh.wait_listener(sc, f"{bind}_9080")
    return sc, bind


def setup_mesh(mesh: Mesh, upstreams: UpstreamFactory) -> tuple[HttpEchoServer, HttpEchoServer]:
    v1 = upstreams.http("backend-v1")
    v2 = upstreams.http("backend-v2")
    bind = allocate_ip()
    mesh.bind = bind  # type: ignore[attr-defined]
    mesh.write("services.yaml", service("backend"))
    mesh.write("workloads.yaml", docs(workload("backend-v1", v1, "v1"), workload("backend-v2", v2, "v2")))
    mesh.write("client.yaml", client_sidecar(bind))
    mesh.write("subsets.yaml", subsets("backend", ["v1", "v2"]))
    mesh.write("route.yaml", route_to("backend", "v1"))
    mesh.start()
    return v1, v2


def test_request_through_two_sidecars_reaches_the_app(mesh: Mesh, upstreams: UpstreamFactory) -> None:
    """client app -> client sidecar (outbound) -> server sidecar (inbound) -> server app."""
    app = upstreams.http("reviews-app")
    server_ip = allocate_ip()
    client_bind = allocate_ip()
    mesh.write("services.yaml", service("reviews"))
    mesh.write(
        "workloads.yaml",
        docs(
            workload_entry("reviews-v1", server_ip, {"app": "reviews", "version": "v1"}),
            workload_sidecar("reviews", f"{app.host}:{app.port}", egress_bind=allocate_ip()),
        ),
    )
    mesh.write("client.yaml", client_sidecar(client_bind))
    mesh.start()
    server = mesh.sidecar("reviews-v1", ip=server_ip, labels={"app": "reviews", "version": "v1"})
    mesh.wait_listener(server, f"{server_ip}_9080")
    client = mesh.sidecar("client", labels={"app": "client"})
    mesh.wait_listener(client, f"{client_bind}_9080")

    def call() -> int:
        return http_request(client_bind, 9080, "/hello", host="reviews:9080").status

    mesh.wait(lambda: call() == 200, 10, "a 200 through both sidecars")
    r = http_request(client_bind, 9080, "/hello", host="reviews.default.svc.cluster.local:9080")
    assert r.status == 200
    body = r.json()
    assert body["server"] == "reviews-app" and body["path"] == "/hello"
    # Both sidecars really carried it: the inbound listener counted the request.
    assert server.stat(f"http.inbound_{server_ip}_9080.downstream_rq_2xx") >= 1
    assert client.stat(f"http.outbound_{client_bind}_9080.downstream_rq_2xx") >= 1
    # The control plane saw both proxies ACK everything.
    mesh.wait_synced()


def test_config_edit_moves_traffic(mesh: Mesh, upstreams: UpstreamFactory) -> None:
    setup_mesh(mesh, upstreams)
    _, bind = start_client(mesh)
    mesh.wait(lambda: set(servers_hit(bind, 5)) == {"backend-v1"}, 10, "all traffic on v1")
    mesh.write("route.yaml", route_to("backend", "v2"))
    mesh.wait(lambda: set(servers_hit(bind, 5)) == {"backend-v2"}, 10, "all traffic on v2 after the edit")
    assert set(servers_hit(bind, 20)) == {"backend-v2"}


def test_endpoint_change_is_eds_only(mesh: Mesh, upstreams: UpstreamFactory) -> None:
    v1, _ = setup_mesh(mesh, upstreams)
    sc, bind = start_client(mesh)
    mesh.wait(lambda: set(servers_hit(bind, 3)) == {"backend-v1"}, 10, "traffic on v1")
    mesh.wait_synced()
    before = sc.stats()
    # v1 moves to a new server: only its endpoint changes.
    moved = upstreams.http("backend-v1-moved")
    mesh.write(
        "workloads.yaml",
        docs(workload("backend-v1", moved, "v1"), workload("backend-v2", upstreams.started[1], "v2")),  # type: ignore[arg-type]
    )
    mesh.wait(lambda: set(servers_hit(bind, 3)) == {"backend-v1-moved"}, 10, "traffic on the moved endpoint")
    mesh.wait_synced()
    after = sc.stats()
    # The new endpoint came by EDS alone: no cluster, listener or route update.
    for counter in ("cluster_manager.cds.update_success", "listener_manager.lds.update_success"):
        assert after.get(counter) == before.get(counter), counter
    rds = [k for k in after if k.startswith("http.outbound_") and k.endswith(".rds.9080.update_success")]
    for k in rds:
        assert after[k] == before.get(k), k
    assert int(after["cluster_manager.cluster_added"]) == int(before["cluster_manager.cluster_added"])
    assert v1.state.count() >= 1


def test_bad_file_is_reported_and_traffic_keeps_flowing(mesh: Mesh, upstreams: UpstreamFactory) -> None:
    setup_mesh(mesh, upstreams)
    _, bind = start_client(mesh)
    mesh.wait(lambda: set(servers_hit(bind, 3)) == {"backend-v1"}, 10, "traffic on v1")
    # A typo in a field, in the file that holds the live route.
    mesh.write("route.yaml", route_to("backend", "v2").replace("destination:", "destinaton:"))
    errors = mesh.wait(lambda: mesh.debug("/debug/configz")["errors"], 10, "the error to be reported")
    assert any("route.yaml" in e and "VirtualService default/backend" in e and "destinaton" in e for e in errors), (
        errors
    )
    # The last good route keeps serving.
    assert set(servers_hit(bind, 10)) == {"backend-v1"}
    # Garbage YAML is also reported, and still nothing is lost.
    mesh.write("garbage.yaml", "kind: [unclosed\n  - :")
    mesh.wait(lambda: any("garbage.yaml" in e for e in mesh.debug("/debug/configz")["errors"]), 10, "the YAML error")
    assert set(servers_hit(bind, 10)) == {"backend-v1"}
    assert mesh.proc is not None and mesh.proc.poll() is None
    # Fixing the file applies the new route.
    mesh.write("route.yaml", route_to("backend", "v2"))
    mesh.wait(lambda: set(servers_hit(bind, 5)) == {"backend-v2"}, 10, "the fixed route")
