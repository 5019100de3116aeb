"""Graceful shutdown end to end: `istiod-py serve` gets SIGTERM, drains (closes
its xDS streams with OK) and exits 0; a real Envoy sidecar keeps serving traffic
on its last config while the control plane is down, reconnects when it returns
on the same address, and applies a config change made after the restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import tests.support.mesh as mesh_module
from tests.support.configs import client_sidecar, docs, route_to, service, subsets, workload_entry
from tests.support.envoy import EnvoyFactory
from tests.support.mesh import Mesh
from tests.support.net import allocate_ip
from tests.support.upstreams import HttpEchoServer, UpstreamFactory
from tests.support.upstreams import servers_hit as _servers_hit

pytestmark = pytest.mark.timeout(60)

SERVICES = docs(service("backend"), subsets("backend", ["v1", "v2"]))


def workload(name: str, up: HttpEchoServer, version: str) -> str:
    return workload_entry(name, up.host, {"app": "backend", "version": version}, ports={"http": up.port})


def servers_hit(bind: str, n: int) -> list[str]:
    return _servers_hit(bind, n, "backend:9080")


@pytest.fixture(params=["sotw", "delta"])
def mesh(request: pytest.FixtureRequest, tmp_path: Path, envoy_factory: EnvoyFactory) -> Iterator[Mesh]:
    m = Mesh(tmp_path, envoy_factory, delta=request.param == "delta", extra_args=["--drain-timeout", "3"])
    yield m
    m.stop()


def restart_on_same_address(mesh: Mesh, monkeypatch: pytest.MonkeyPatch) -> None:
    """Start the control plane again where the sidecar's bootstrap points."""
    host, ports = mesh.host, iter([mesh.xds_port, mesh.debug_port])
    with monkeypatch.context() as mp:
        mp.setattr(mesh_module, "allocate_ip", lambda: host)
        mp.setattr(mesh_module, "free_port", lambda _host: next(ports))
        mesh.start()


def test_envoy_serves_on_last_config_while_the_control_plane_is_down_and_resyncs(
    mesh: Mesh, upstreams: UpstreamFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1, v2 = upstreams.http("backend-v1"), upstreams.http("backend-v2")
    bind = allocate_ip()
    mesh.write("services.yaml", SERVICES)
    mesh.write("workloads.yaml", docs(workload("backend-v1", v1, "v1"), workload("backend-v2", v2, "v2")))
    mesh.write("client.yaml", client_sidecar(bind))
    mesh.write("route.yaml", route_to("backend", "v1"))
    mesh.start()
    sc = mesh.sidecar("client", labels={"app": "client"})
    mesh.wait_listener(sc, f"{bind}_9080")
    mesh.wait(lambda: servers_hit(bind, 3) == ["backend-v1"] * 3, what="traffic to v1")
    assert sc.stat("control_plane.connected_state") == 1

    # SIGTERM: the control plane drains and exits 0, well within --drain-timeout.
    began = time.monotonic()
    mesh.stop()
    assert mesh.proc is not None and mesh.proc.returncode == 0, mesh.log_tail()
    assert time.monotonic() - began < 3.0
    log = mesh.log_tail(200)
    assert "draining" in log and "proxy disconnected" in log and "stopped" in log, log
    assert "DEADLINE_EXCEEDED" not in log and "cancelling" not in log

    # Envoy lost its control plane but keeps serving on the last config.
    mesh.wait(lambda: sc.stat("control_plane.connected_state") == 0, 5, "Envoy to see the control plane gone")
    assert servers_hit(bind, 5) == ["backend-v1"] * 5
    sc.assert_running()

    # The control plane returns (same address): the sidecar reconnects and resyncs,
    # and a change made now reaches it.
    restart_on_same_address(mesh, monkeypatch)
    mesh.wait(lambda: sc.stat("control_plane.connected_state") == 1, 15, "Envoy to reconnect")
    mesh.wait_synced(10)
    assert servers_hit(bind, 3) == ["backend-v1"] * 3
    mesh.write("route.yaml", route_to("backend", "v2"))
    mesh.wait(lambda: servers_hit(bind, 3) == ["backend-v2"] * 3, 10, "traffic to move to v2")
