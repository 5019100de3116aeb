"""VirtualService delegation end to end: the real control plane on files, a real
Envoy client sidecar, real upstream servers; every assertion is on traffic
(which upstream answered, which headers came back).

One mesh serves the module: a root VirtualService on `reviews` delegates `/v2`
to `reviews-v2` (its routes merged under the root's `/v2` match) and everything
else to `reviews-rest`. The later tests edit or remove only a delegate's file
and restore it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.envoy import EnvoyProcess, envoy_factory_context
from tests.support.mesh import Mesh
from tests.support.net import allocate_ip
from tests.support.upstreams import HttpEchoServer, Response, UpstreamFactory, http_request

HOST = "reviews:9080"


def _workload(version: str, up: HttpEchoServer) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: reviews-{version}, namespace: default}}
spec:
  address: {up.host}
  ports: {{http: {up.port}}}
  labels: {{app: reviews, version: {version}}}
"""


SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
"""


def _client_sidecar(bind: str) -> str:
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


ROOT = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - name: v2
    match: [{uri: {prefix: /v2}}]
    headers: {response: {set: {x-root: v2}}}
    delegate: {name: reviews-v2}
  - name: rest
    delegate: {name: reviews-rest}
"""

DELEGATE_V2 = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-v2, namespace: default}
spec:
  http:
  - name: jason
    match: [{uri: {prefix: /v2/jason}, headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - name: outside
    match: [{uri: {prefix: /elsewhere}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - route: [{destination: {host: reviews, subset: v2}}]
"""


def _rest(subset: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews-rest, namespace: default}}
spec:
  http:
  - route: [{{destination: {{host: reviews, subset: {subset}}}}}]
"""


@dataclass
class Env:
    mesh: Mesh
    client: EnvoyProcess
    bind: str

    def get(self, path: str, **kw: Any) -> Response:
        kw.setdefault("host", HOST)
        return http_request(self.bind, 9080, path, **kw)

    def server(self, path: str, **kw: Any) -> str | None:
        return self.get(path, **kw).headers.get("x-echo-server")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, envoy_bin: str) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("delegate")
    ups = UpstreamFactory()
    with envoy_factory_context(tmp / "envoy") as envoys:
        mesh = Mesh(tmp, envoys)
        try:
            v1, v2, v3 = ups.http("reviews-v1"), ups.http("reviews-v2"), ups.http("reviews-v3")
            bind = allocate_ip()
            mesh.write("service.yaml", SERVICE)
            mesh.write("workloads.yaml", "---".join(_workload(v, u) for v, u in (("v1", v1), ("v2", v2), ("v3", v3))))
            mesh.write("client.yaml", _client_sidecar(bind))
            mesh.write("root.yaml", ROOT)
            mesh.write("delegate-v2.yaml", DELEGATE_V2)
            mesh.write("delegate-rest.yaml", _rest("v1"))
            mesh.start()
            client = mesh.sidecar("client", labels={"app": "client"})
            mesh.wait_listener(client, f"{bind}_9080")
            e = Env(mesh, client, bind)
            mesh.wait(lambda: e.server("/v2/x") == "reviews-v2", 10, "the merged routes to apply")
            mesh.wait_synced()  # every resource ACKed: Envoy rejected nothing
            yield e
        finally:
            mesh.stop()
            ups.stop_all()


def test_root_match_narrowed_by_the_delegate(env: Env) -> None:
    r = env.get("/v2/x")
    assert r.status == 200 and r.headers["x-echo-server"] == "reviews-v2"
    # The root route's response headers apply to the delegate routes that set none.
    assert r.headers.get("x-root") == "v2"
    # The delegate's header condition is merged with the root's uri prefix.
    assert env.server("/v2/jason/1", headers={"end-user": "jason"}) == "reviews-v3"
    assert env.server("/v2/jason/1", headers={"end-user": "mallory"}) == "reviews-v2"
    assert env.server("/v2/other", headers={"end-user": "jason"}) == "reviews-v2"


def test_conflicting_delegate_route_is_dropped_and_the_rest_delegate_takes_the_rest(env: Env) -> None:
    # /elsewhere is outside the root's /v2: that delegate route is not used, so
    # the request falls to the second root route (reviews-rest -> v1).
    r = env.get("/elsewhere")
    assert r.headers["x-echo-server"] == "reviews-v1" and "x-root" not in r.headers
    assert env.server("/") == "reviews-v1"
    warnings = env.mesh.debug("/debug/configz")["warnings"]
    assert any("reviews-v2" in w and "spec.http[1].match" in w and "DelegateNotApplied" in w for w in warnings)


def test_editing_only_a_delegate_moves_traffic(env: Env) -> None:
    try:
        env.mesh.write("delegate-rest.yaml", _rest("v3"))
        env.mesh.wait(lambda: env.server("/anything") == "reviews-v3", 10, "the delegate edit to apply")
        assert all(env.server(f"/page/{i}") == "reviews-v3" for i in range(10))
        assert env.server("/v2/x") == "reviews-v2"  # the other delegate is untouched
    finally:
        env.mesh.write("delegate-rest.yaml", _rest("v1"))
        env.mesh.wait(lambda: env.server("/anything") == "reviews-v1", 10, "the delegate to be restored")


def test_a_missing_delegate_drops_its_routes_and_is_reported(env: Env) -> None:
    try:
        env.mesh.remove("delegate-v2.yaml")
        # The /v2 route is gone: /v2 requests fall to the next root route.
        env.mesh.wait(lambda: env.server("/v2/x") == "reviews-v1", 10, "the delegate removal to apply")
        warnings = env.mesh.debug("/debug/configz")["warnings"]
        assert any('Referenced virtualservice not found: "default/reviews-v2"' in w for w in warnings), warnings
    finally:
        env.mesh.write("delegate-v2.yaml", DELEGATE_V2)
        env.mesh.wait(lambda: env.server("/v2/x") == "reviews-v2", 10, "the delegate to be restored")
