"""NACK to origin with quarantine, end to end with real Envoy (issue 16).

An EnvoyFilter whose Lua code does not compile passes validation (it is a
well-formed Lua filter) but Envoy rejects the listener. The control plane must
name the EnvoyFilter and its patch within one push (the first NACK), in
/debug/syncz, /debug/quarantinez, /debug/configz, the log and a metric; serve
the client its config without it, so that later changes (a VirtualService edit,
a new listener) still reach the Envoy; and lift the quarantine when the
EnvoyFilter is fixed, after which the fixed filter is live.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from istiod_py.cli.proxy_status import rows_of
from tests.support.configs import client_sidecar, docs, lua_filter, service, workload_entry, workload_sidecar
from tests.support.envoy import EnvoyProcess, envoy_factory_context
from tests.support.mesh import Mesh
from tests.support.net import allocate_ip
from tests.support.upstreams import HttpEchoServer, Response, UpstreamFactory, http_request

HOST = "productpage:9080"
CLIENT_ID_PART = "client"

BAD_LUA = lua_filter("function envoy_on_response(h) this is not lua end")
GOOD_LUA = lua_filter("function envoy_on_response(h) h:headers():add('x-lua', 'fixed') end")


def route_header(value: str) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: productpage, namespace: default}}
spec:
  hosts: [productpage]
  http:
  - headers: {{response: {{set: {{x-route: {value}}}}}}}
    route:
    - destination: {{host: productpage}}"""


class Env:
    def __init__(self, mesh: Mesh, client: EnvoyProcess, bind: str) -> None:
        self.mesh, self.client, self.bind = mesh, client, bind

    def get(self) -> Response:
        return http_request(self.bind, 9080, "/", host=HOST, headers={"Connection": "close"})

    def client_lds(self) -> dict[str, Any]:
        for p in self.mesh.debug("/debug/syncz"):
            if CLIENT_ID_PART in p["proxy"]:
                return p["types"]["LDS"]  # type: ignore[no-any-return]
        return {}

    def client_row(self) -> dict[str, Any]:
        rows = rows_of(self.mesh.debug("/debug/syncz"), "istiod")
        return next(r for r in rows if CLIENT_ID_PART in r["name"])

    def listeners(self) -> list[str]:
        return [lst["name"] for lst in self.client.dynamic_resources("ListenersConfigDump")]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, envoy_bin: str) -> Iterator[Env]:
    tmp: Path = tmp_path_factory.mktemp("quarantine")
    ups = UpstreamFactory()
    with envoy_factory_context(tmp / "envoy") as envoys:
        mesh = Mesh(tmp, envoys)  # quarantine is on by default
        try:
            app: HttpEchoServer = ups.http("productpage-app")
            pp_ip, bind = allocate_ip(), allocate_ip()
            mesh.write(
                "base.yaml",
                docs(
                    service("productpage"),
                    workload_entry("productpage", pp_ip, {"app": "productpage"}),
                    workload_sidecar("productpage", f"{app.host}:{app.port}", egress_bind=allocate_ip()),
                    client_sidecar(bind),
                    route_header("v1"),
                ),
            )
            mesh.start()
            server = mesh.sidecar("productpage", ip=pp_ip, labels={"app": "productpage"})
            client = mesh.sidecar("client", labels={"app": "client"})
            mesh.wait_listener(server, f"{pp_ip}_9080")
            mesh.wait_listener(client, f"{bind}_9080")
            e = Env(mesh, client, bind)
            mesh.wait(lambda: e.get().headers.get("x-route") == "v1", 15, "traffic through both sidecars")
            yield e
        finally:
            mesh.stop()
            ups.stop_all()


def test_bad_envoyfilter_named_quarantined_and_cleared(env: Env) -> None:
    mesh = env.mesh
    mesh.write("lua.yaml", BAD_LUA)

    # Named at the first NACK: syncz's NACK carries the EnvoyFilter and its patch.
    def named() -> Any:
        nack = env.client_lds().get("last_nack")
        return nack if nack and any("EnvoyFilter/default/lua" in o for o in nack["origins"]) else None

    nack = mesh.wait(named, 15, "the NACK traced to EnvoyFilter default/lua in /debug/syncz")
    assert "EnvoyFilter/default/lua:configPatches[0]" in nack["origins"], nack
    assert env.client_lds()["nacks"] == 1, "named within one push: a single NACK"

    def quarantined() -> Any:
        cases = [c for c in mesh.debug("/debug/quarantinez") if c["phase"] == "quarantined"]
        return cases[0] if cases else None

    case = mesh.wait(quarantined, 15, "the client's quarantine in /debug/quarantinez")
    assert [c["config"] for c in case["culprits"]] == ["EnvoyFilter/default/lua"], case
    assert case["culprits"][0]["fields"] == ["configPatches[0]"], case
    assert any(n.endswith("_9080") for n in case["rejected_resources"]), case
    errors = mesh.debug("/debug/configz")["errors"]
    assert any(e.startswith("EnvoyFilter default/lua configPatches[0]: rejected by 1 proxy") for e in errors), errors
    assert mesh.metric("pilot_xds_config_rejects", 'name="lua"') == 1
    assert "because of EnvoyFilter/default/lua" in mesh.log_tail(400)
    # Propagation status: the client does not hold the EnvoyFilter (it is quarantined there).
    status = mesh.debug("/debug/statusz?resource=EnvoyFilter/default/lua")["resources"]["EnvoyFilter/default/lua"]
    assert status["quarantined"] == status["pending"] and len(status["pending"]) == 1, status
    assert CLIENT_ID_PART in status["pending"][0], status

    # The client is served without the filter: it ACKs again and has no Lua filter.
    mesh.wait(lambda: env.client_lds()["version_acked"] == env.client_lds()["version_sent"], 10, "LDS ACKed again")
    # proxy-status: the client does not hold the whole current config, so not SYNCED.
    assert env.client_row()["lds"] == "STALE (Quarantined)", env.client_row()
    assert env.client_row()["cds"] == "SYNCED", env.client_row()
    assert "envoy.filters.http.lua" not in str(env.client.dynamic_resources("ListenersConfigDump"))

    # Other updates keep flowing during the quarantine: a route change (RDS) ...
    text = (mesh.config_dir / "base.yaml").read_text().replace("x-route: v1", "x-route: v2")
    mesh.write("base.yaml", text)
    mesh.wait(lambda: env.get().headers.get("x-route") == "v2", 15, "the VirtualService change on the client")
    # ... and a listener change (LDS, the rejected type): a new egress port.
    new_bind_port = 9091
    mesh.write("reviews.yaml", docs(service("reviews", port=new_bind_port)))
    wider = client_sidecar(env.bind, ((9080, "HTTP"), (new_bind_port, "HTTP")))
    mesh.write("base.yaml", text.replace(client_sidecar(env.bind), wider))
    mesh.wait_listener(env.client, f"{env.bind}_{new_bind_port}", timeout=15)
    assert quarantined() is not None, "still quarantined: the EnvoyFilter did not change"
    assert env.get().headers.get("x-route") == "v2"

    # The fix lifts the quarantine and reaches the Envoy.
    mesh.write("lua.yaml", GOOD_LUA)
    mesh.wait(lambda: env.get().headers.get("x-lua") == "fixed", 15, "the fixed Lua filter on the client")
    assert quarantined() is None
    assert not [e for e in mesh.debug("/debug/configz")["errors"] if "default/lua" in e]

    def live() -> Any:
        st = mesh.debug("/debug/statusz?resource=EnvoyFilter/default/lua")["resources"]["EnvoyFilter/default/lua"]
        return st if st["proxies"] == 1 and not st["pending"] else None

    mesh.wait(live, 10, "the fixed EnvoyFilter live on the client per /debug/statusz")
    lds = env.client_lds()
    assert lds["version_acked"] == lds["version_sent"]
    assert env.client_row()["lds"] == "SYNCED", env.client_row()
