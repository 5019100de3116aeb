"""EnvoyFilter end to end: the real control plane on files, real Envoy sidecars
(a client and productpage's sidecar in front of an echo server), every claim
checked on traffic or on Envoy's own config_dump.

- Istio's local rate-limit task (deploy/samples/ratelimit/): 429 once the
  bucket is empty; the per-route variant; one named route limited, others not.
- HTTP_FILTER INSERT_BEFORE router of a Lua filter: the client sees its header.
- CLUSTER MERGE of connect_timeout: visible in the client's config_dump.
- A bad patch: reported in /debug/configz, skipped, nothing NACKed, traffic flows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.configs import (
    ONE_REQUEST_PER_CONNECTION,
    client_sidecar,
    docs,
    service,
    workload_entry,
    workload_sidecar,
)
from tests.support.envoy import EnvoyProcess, envoy_factory_context
from tests.support.mesh import Mesh
from tests.support.net import allocate_ip
from tests.support.upstreams import HttpEchoServer, Response, UpstreamFactory, http_request

SAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "samples" / "ratelimit"
HOST = "productpage:9080"
PP_CLUSTER = "outbound|9080||productpage.default.svc.cluster.local"


def base_config(app: HttpEchoServer, pp_ip: str, bind: str) -> str:
    return docs(
        service("productpage"),
        workload_entry("productpage", pp_ip, {"app": "productpage"}),
        workload_sidecar("productpage", f"{app.host}:{app.port}", egress_bind=allocate_ip()),
        client_sidecar(bind),
        # A fresh client->productpage connection per request: connections accepted
        # before a listener update keep the old filters until they drain.
        ONE_REQUEST_PER_CONNECTION.format(host="productpage"),
    )


@dataclass
class Env:
    mesh: Mesh
    client: EnvoyProcess
    server: EnvoyProcess
    app: HttpEchoServer
    bind: str

    def get(self, path: str = "/") -> Response:
        return http_request(self.bind, 9080, path, host=HOST, headers={"Connection": "close"})

    def dump(self, envoy: EnvoyProcess) -> str:
        """The xDS config Envoy serves new connections with (not the bootstrap,
        which lists every extension; no warming or draining versions)."""
        configs = [c for c in envoy.config_dump().get("configs", []) if not c["@type"].endswith("BootstrapConfigDump")]
        for cfg in configs:
            cfg.pop("static_route_configs", None)  # inline route configs, draining ones included
            for lst in cfg.get("dynamic_listeners") or []:
                lst.pop("warming_state", None)
                lst.pop("draining_state", None)
        return json.dumps(configs)

    def until(self, cond: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
        return self.mesh.wait(cond, timeout, what)

    def apply(self, name: str, text: str) -> None:
        self.mesh.write(name, text)

    def remove(self, name: str, *, gone: Callable[[], bool]) -> None:
        self.mesh.remove(name)
        self.until(gone, f"{name} to be gone")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, envoy_bin: str) -> Iterator[Env]:
    tmp: Path = tmp_path_factory.mktemp("envoyfilter")
    ups = UpstreamFactory()
    with envoy_factory_context(tmp / "envoy") as envoys:
        mesh = Mesh(tmp, envoys)
        try:
            app = ups.http("productpage-app")
            pp_ip, bind = allocate_ip(), allocate_ip()
            mesh.write("base.yaml", base_config(app, pp_ip, bind))
            mesh.start()
            server = mesh.sidecar("productpage", ip=pp_ip, labels={"app": "productpage"})
            client = mesh.sidecar("client", labels={"app": "client"})
            mesh.wait_listener(server, f"{pp_ip}_9080")
            mesh.wait_listener(client, f"{bind}_9080")
            e = Env(mesh, client, server, app, bind)
            e.until(lambda: e.get().status == 200, "traffic through both sidecars")
            yield e
        finally:
            mesh.stop()
            ups.stop_all()


def statuses(env: Env, n: int, path: str = "/") -> list[int]:
    return [env.get(path).status for _ in range(n)]


def _has_ratelimit(env: Env) -> bool:
    return "envoy.filters.http.local_ratelimit" in env.dump(env.server)


def test_local_ratelimit_task(env: Env) -> None:
    env.apply("ratelimit.yaml", (SAMPLES / "local-ratelimit.yaml").read_text())
    env.until(lambda: _has_ratelimit(env), "the rate limit filter on productpage's sidecar")
    env.mesh.wait_synced()
    got = statuses(env, 6)
    assert got == [200] * 4 + [429] * 2, got
    r = env.get()
    assert r.status == 429 and r.headers.get("x-local-rate-limit") == "true"
    env.remove("ratelimit.yaml", gone=lambda: not _has_ratelimit(env))
    env.until(lambda: env.get().status == 200, "traffic without the limit")


def test_local_ratelimit_task_per_route(env: Env) -> None:
    env.apply("ratelimit.yaml", (SAMPLES / "local-ratelimit-per-route.yaml").read_text())
    env.until(lambda: "typed_per_filter_config" in env.dump(env.server) and _has_ratelimit(env), "per-route limit")
    env.mesh.wait_synced()
    got = statuses(env, 6)
    assert got == [200] * 4 + [429] * 2, got
    env.remove("ratelimit.yaml", gone=lambda: not _has_ratelimit(env))


def test_local_ratelimit_one_named_route_only(env: Env) -> None:
    env.apply("ratelimit-route.yaml", (SAMPLES / "local-ratelimit-one-route.yaml").read_text())
    env.until(lambda: "typed_per_filter_config" in env.dump(env.client), "per-route limit on the client")
    env.mesh.wait_synced()
    assert statuses(env, 6, "/limited/x") == [200] * 4 + [429] * 2
    assert statuses(env, 8, "/other") == [200] * 8  # the other route has no bucket
    env.remove("ratelimit-route.yaml", gone=lambda: "local_ratelimit" not in env.dump(env.client))


LUA = f"""
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {{name: add-header, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: client}}}}
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_OUTBOUND
      listener:
        portNumber: 9080
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter: {{name: envoy.filters.http.router}}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.lua
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
          default_source_code:
            inline_string: |
              function envoy_on_response(handle)
                handle:headers():add("x-envoyfilter-lua", "hello")
              end
  - applyTo: CLUSTER
    match: {{context: SIDECAR_OUTBOUND, cluster: {{name: "{PP_CLUSTER}"}}}}
    patch: {{operation: MERGE, value: {{connect_timeout: 7.5s}}}}
"""


def test_lua_filter_header_and_cluster_merge(env: Env) -> None:
    env.apply("lua.yaml", LUA)
    r = env.until(lambda: (lambda r: r if r.headers.get("x-envoyfilter-lua") == "hello" else None)(env.get()), "lua")
    assert r.status == 200

    def timeout_of() -> str:
        for c in env.client.dynamic_resources("ClustersConfigDump"):
            cluster = c.get("cluster", c)
            if cluster.get("name") == PP_CLUSTER:
                return str(cluster.get("connect_timeout"))
        return "(no cluster)"

    env.until(lambda: timeout_of() in ("7.5s", "7.500s"), "connect_timeout 7.5s in the client's config_dump")
    env.remove("lua.yaml", gone=lambda: "x-envoyfilter-lua" not in env.get().headers)


BAD = """
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: broken, namespace: default}
spec:
  workloadSelector: {labels: {app: client}}
  configPatches:
  - applyTo: HTTP_FILTER   # after the router: Envoy would reject the listener
    match: {context: SIDECAR_OUTBOUND, listener: {portNumber: 9080}}
    patch:
      operation: ADD
      value:
        name: envoy.filters.http.lua
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
          default_source_code: {inline_string: "function envoy_on_response(h) h:headers():add('x-bad', '1') end"}
  - applyTo: CLUSTER       # connect_timeout 0 is invalid
    match: {cluster: {service: productpage.default.svc.cluster.local}}
    patch:
      operation: REPLACE
      value: {name: "outbound|9080||productpage.default.svc.cluster.local", type: STATIC, connect_timeout: 0s}
"""


def test_bad_patch_reported_skipped_traffic_flows(env: Env) -> None:
    env.apply("bad.yaml", BAD)

    def reported() -> list[str]:
        errs = [e for e in env.mesh.debug("/debug/configz")["errors"] if "default/broken" in e]
        return errs if len(errs) >= 2 else []

    errs = env.until(reported, "the bad patches in /debug/configz")
    text = "\n".join(errs)
    assert "router filter must be the last" in text and "connect_timeout" in text, text
    env.mesh.wait_synced()  # everything sent was ACKed: nothing Envoy rejects went out
    r = env.get()
    assert r.status == 200 and "x-bad" not in r.headers
    assert "x-bad" not in env.dump(env.client)
    env.mesh.remove("bad.yaml")
    env.until(lambda: not [e for e in env.mesh.debug("/debug/configz")["errors"] if "broken" in e], "errors cleared")
