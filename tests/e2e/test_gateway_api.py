"""Kubernetes Gateway API end to end: the control plane on files converts Gateway API
resources to its Istio model; a real router Envoy (labelled, as istiod labels gateway
pods, `gateway.networking.k8s.io/gateway-name`) and a real client sidecar carry traffic
to real upstreams. Every assertion is on traffic."""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.envoy import EnvoyProcess, envoy_factory_context
from tests.support.mesh import Mesh
from tests.support.net import allocate_ip
from tests.support.upstreams import HttpEchoServer, Response, UpstreamFactory, http_request

GW_LABEL = "gateway.networking.k8s.io/gateway-name"


def service(name: str, up: HttpEchoServer, namespace: str = "default") -> str:
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: 9080}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  address: {up.host}
  ports: {{http: {up.port}}}
  labels: {{app: {name}}}
---
"""


GATEWAY = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: istio
  listeners:
  - name: http
    port: 8080
    protocol: HTTP
    allowedRoutes: {namespaces: {from: All}}
---
"""

ROUTES = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: matches, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [match.example.com]
  rules:
  - matches: [{path: {type: Exact, value: /exact}}]
    filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: x-rule, value: exact}]}}]
    backendRefs: [{name: web, port: 9080}]
  - matches: [{path: {type: RegularExpression, value: "/re/[0-9]+"}}]
    filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: x-rule, value: regex}]}}]
    backendRefs: [{name: web, port: 9080}]
  - matches: [{path: {type: PathPrefix, value: /}, headers: [{name: x-env, value: canary}]}]
    filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: x-rule, value: header}]}}]
    backendRefs: [{name: web-v2, port: 9080}]
  - matches: [{path: {type: PathPrefix, value: /}, queryParams: [{name: v, value: "2"}]}]
    filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: x-rule, value: query}]}}]
    backendRefs: [{name: web-v2, port: 9080}]
  - matches: [{path: {type: PathPrefix, value: /}, method: DELETE}]
    filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: x-rule, value: method}]}}]
    backendRefs: [{name: web-v2, port: 9080}]
  - matches: [{path: {type: PathPrefix, value: /}}]
    filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: x-rule, value: prefix}]}}]
    backendRefs: [{name: web, port: 9080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: filters, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  hostnames: [filters.example.com]
  rules:
  - matches: [{path: {value: /headers}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-set, value: s}], add: [{name: x-add, value: a}], remove: [x-remove]}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {set: [{name: x-resp, value: r}]}
    backendRefs: [{name: web, port: 9080}]
  - matches: [{path: {value: /redirect}}]
    filters:
    - type: RequestRedirect
      requestRedirect:
        scheme: https
        hostname: secure.example.com
        port: 8443
        statusCode: 301
        path: {type: ReplaceFullPath, replaceFullPath: /moved}
  - matches: [{path: {value: /old}}]
    filters:
    - type: URLRewrite
      urlRewrite: {hostname: rewritten.example.com, path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}
    backendRefs: [{name: web, port: 9080}]
  - matches: [{path: {value: /strip}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
    backendRefs: [{name: web, port: 9080}]
  - matches: [{path: {value: /moved-prefix/}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /new-home}, statusCode: 302}
  - matches: [{path: {value: /full}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /replaced}}}]
    backendRefs: [{name: web, port: 9080}]
  - matches: [{path: {value: /mirror}}]
    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: mirror, port: 9080}}}]
    backendRefs: [{name: web, port: 9080}]
  - matches: [{path: {value: /split}}]
    backendRefs: [{name: web, port: 9080, weight: 80}, {name: web-v2, port: 9080, weight: 20}]
  - matches: [{path: {value: /slow}}]
    timeouts: {request: 300ms}
    backendRefs: [{name: web, port: 9080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: partly-broken, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [partly.example.com]
  rules:
  - backendRefs: [{name: web, port: 9080, weight: 3}, {name: not-a-service, port: 9080, weight: 1}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cross-ns, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [cross.example.com]
  rules:
  - backendRefs: [{name: backend, namespace: other, port: 9080}]
---
"""

GRANT = """
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: let-default-in, namespace: other}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}]
  to: [{group: "", kind: Service, name: backend}]
"""

MESH_ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web-canary, namespace: default}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 9080}]
  rules:
  - matches: [{headers: [{name: x-canary, value: "yes"}]}]
    backendRefs: [{name: web-v2, port: 9080}]
  - backendRefs: [{name: web, port: 9080}]
"""


def client_sidecar(bind: str, namespace: str = "default", hosts: str = "./*") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: client, namespace: {namespace}}}
spec:
  workloadSelector: {{labels: {{app: client}}}}
  egress:
  - port: {{number: 9080, protocol: HTTP, name: http}}
    bind: {bind}
    captureMode: NONE
    hosts: ["{hosts}"]
---
"""


CONSUMER_ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web-for-team, namespace: team}
spec:
  parentRefs: [{group: "", kind: Service, name: web, namespace: default, port: 9080}]
  rules:
  - backendRefs: [{name: web-v2, namespace: default, port: 9080}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: team-to-web, namespace: default}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: team}]
  to: [{group: "", kind: Service, name: web-v2}]
"""


@dataclass
class Env:
    mesh: Mesh
    gw: EnvoyProcess
    ip: str
    client: EnvoyProcess
    bind: str
    team_client: EnvoyProcess
    team_bind: str
    web: HttpEchoServer
    web2: HttpEchoServer
    mirror: HttpEchoServer
    backend: HttpEchoServer

    def get(self, path: str, host: str, **kw: Any) -> Response:
        return http_request(self.ip, 8080, path, host=host, **kw)

    def call_web(self, headers: dict[str, str] | None = None, bind: str = "") -> Response:
        return http_request(bind or self.bind, 9080, "/", host="web.default.svc.cluster.local", headers=headers)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, envoy_bin: str) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("gwapi")
    ups = UpstreamFactory()
    with envoy_factory_context(tmp / "envoy") as envoys:
        mesh = Mesh(tmp, envoys)
        try:
            web, web2, mirror, backend = ups.http("web"), ups.http("web-v2"), ups.http("mirror"), ups.http("backend")
            bind = allocate_ip()
            mesh.write(
                "services.yaml",
                service("web", web)
                + service("web-v2", web2)
                + service("mirror", mirror)
                + service("backend", backend, "other"),
            )
            team_bind = allocate_ip()
            mesh.write("client.yaml", client_sidecar(bind) + client_sidecar(team_bind, "team", "*/*"))
            mesh.write("gateway.yaml", GATEWAY)
            mesh.write("routes.yaml", ROUTES)
            mesh.start()
            ip = allocate_ip()
            gw = mesh.gateway("gw-istio", ip=ip, namespace="default", labels={GW_LABEL: "gw"})
            mesh.wait_listener(gw, f"{ip}_8080")
            client = mesh.sidecar("client", labels={"app": "client"})
            mesh.wait_listener(client, f"{bind}_9080")
            team_client = mesh.sidecar("team-client", namespace="team", labels={"app": "client"})
            mesh.wait_listener(team_client, f"{team_bind}_9080")
            e = Env(mesh, gw, ip, client, bind, team_client, team_bind, web, web2, mirror, backend)
            mesh.wait(lambda: e.get("/exact", "match.example.com").status == 200, 10, "the routes to apply")
            mesh.wait_synced()  # every resource ACKed: Envoy rejected nothing
            yield e
        finally:
            mesh.stop()
            ups.stop_all()


def test_match_kinds(env: Env) -> None:
    def rule(path: str, **kw: Any) -> tuple[str | None, str]:
        r = env.get(path, "match.example.com", **kw)
        return r.headers.get("x-rule"), r.json()["server"]

    assert rule("/exact") == ("exact", "web")
    assert rule("/exact/more") == ("prefix", "web")  # Exact is exact
    assert rule("/re/42") == ("regex", "web")
    assert rule("/re/abc") == ("prefix", "web")
    assert rule("/any", headers={"x-env": "canary"}) == ("header", "web-v2")
    assert rule("/any?v=2") == ("query", "web-v2")
    assert rule("/any?v=3") == ("prefix", "web")
    assert rule("/any", method="DELETE") == ("method", "web-v2")
    # A host no route names: 404 from the gateway.
    assert env.get("/exact", "nobody.example.com").status == 404


def test_header_modifiers(env: Env) -> None:
    r = env.get("/headers", "filters.example.com", headers={"x-set": "old", "x-remove": "gone"})
    seen = r.json()["headers"]
    assert seen["x-set"] == "s" and seen["x-add"] == "a" and "x-remove" not in seen
    assert r.headers.get("x-resp") == "r"


def test_redirect_and_rewrites(env: Env) -> None:
    r = env.get("/redirect", "filters.example.com")
    assert r.status == 301
    assert r.headers["location"] == "https://secure.example.com:8443/moved"
    r = env.get("/old/page", "filters.example.com")
    assert r.status == 200 and r.json()["path"] == "/new/page"
    assert r.json()["headers"]["host"] == "rewritten.example.com"
    r = env.get("/full/x/y", "filters.example.com")
    assert r.json()["path"] == "/replaced"
    # ReplacePrefixMatch "/" drops the prefix without leaving "//".
    assert env.get("/strip/a/b", "filters.example.com").json()["path"] == "/a/b"
    assert env.get("/strip", "filters.example.com").json()["path"] == "/"
    # A redirect that replaces the matched prefix keeps the rest of the path.
    r = env.get("/moved-prefix/page?q=1", "filters.example.com")
    assert r.status == 302 and r.headers["location"].endswith("/new-home/page?q=1"), r.headers


def test_path_prefix_matches_whole_segments(env: Env) -> None:
    """Gateway API PathPrefix `/old` matches /old and /old/..., never /older (Istio's prefix would)."""
    assert env.get("/old", "filters.example.com").json()["path"] == "/new"
    assert env.get("/old/", "filters.example.com").json()["path"] == "/new/"
    assert env.get("/older", "filters.example.com").status == 404
    assert env.get("/exact/more", "match.example.com").headers.get("x-rule") == "prefix"  # "/" still matches all


def test_mirror_seen_at_the_mirror(env: Env) -> None:
    before = env.mirror.state.count("/mirror")
    assert env.get("/mirror", "filters.example.com").json()["server"] == "web"
    env.mirror.state.wait_for_count(before + 1, "/mirror")


def test_weights_within_binomial_bounds(env: Env) -> None:
    n = 400

    def one(_: int) -> str:
        return str(env.get("/split", "filters.example.com").json()["server"])

    with ThreadPoolExecutor(16) as pool:
        servers = list(pool.map(one, range(n)))
    v2 = servers.count("web-v2")
    sd = math.sqrt(n * 0.2 * 0.8)
    assert servers.count("web") + v2 == n
    assert n * 0.2 - 4 * sd <= v2 <= n * 0.2 + 4 * sd, v2


def test_invalid_backend_share_answers_500(env: Env) -> None:
    """The spec: requests an invalid backend would get answer 500, the rest reach the valid ones."""
    n = 400

    def one(_: int) -> int:
        r = env.get("/", "partly.example.com")
        assert r.status == 500 or r.json()["server"] == "web"
        return r.status

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(one, range(n)))
    failed = statuses.count(500)
    sd = math.sqrt(n * 0.25 * 0.75)
    assert statuses.count(200) + failed == n
    assert n * 0.25 - 4 * sd <= failed <= n * 0.25 + 4 * sd, failed


def test_request_timeout(env: Env) -> None:
    assert env.get("/slow", "filters.example.com", headers={"x-echo-delay-ms": "2000"}).status == 504
    assert env.get("/slow", "filters.example.com").status == 200


def test_cross_namespace_backend_needs_a_reference_grant(env: Env) -> None:
    assert env.get("/", "cross.example.com").status == 500  # refused: no ReferenceGrant
    assert env.backend.state.count() == 0
    assert resolved_refs(env, "cross-ns") == ("False", "RefNotPermitted")  # the route's status says why
    env.mesh.write("grant.yaml", GRANT)
    try:
        env.mesh.wait(lambda: env.get("/", "cross.example.com").status == 200, 10, "the grant to apply")
        assert env.get("/", "cross.example.com").json()["server"] == "backend"
        assert resolved_refs(env, "cross-ns") == ("True", "ResolvedRefs")
    finally:
        env.mesh.remove("grant.yaml")
    env.mesh.wait(lambda: env.get("/", "cross.example.com").status == 500, 10, "the grant removal to apply")


def resolved_refs(env: Env, route: str) -> tuple[str, str]:
    """The HTTPRoute's ResolvedRefs condition as /debug/configz shows it."""
    for st in env.mesh.debug("/debug/configz")["gatewayApiStatus"]:
        if (st["kind"], st["name"]) == ("HTTPRoute", route):
            (cond,) = [c for c in st["status"]["parents"][0]["conditions"] if c["type"] == "ResolvedRefs"]
            return cond["status"], cond["reason"]
    raise AssertionError(f"no status for HTTPRoute {route}")


def test_gamma_mesh_route_changes_sidecar_traffic(env: Env) -> None:
    assert env.call_web(headers={"x-canary": "yes"}).json()["server"] == "web"  # no mesh route yet
    env.mesh.write("mesh-route.yaml", MESH_ROUTE)
    try:
        env.mesh.wait(
            lambda: env.call_web(headers={"x-canary": "yes"}).json()["server"] == "web-v2", 10, "the mesh route"
        )
        assert env.call_web().json()["server"] == "web"
        env.mesh.wait_synced()
    finally:
        env.mesh.remove("mesh-route.yaml")
    env.mesh.wait(lambda: env.call_web(headers={"x-canary": "yes"}).json()["server"] == "web", 10, "route removal")


def test_gamma_consumer_route_applies_to_its_namespace_only(env: Env) -> None:
    assert env.call_web(bind=env.team_bind).json()["server"] == "web"
    env.mesh.write("consumer-route.yaml", CONSUMER_ROUTE)
    try:
        env.mesh.wait(lambda: env.call_web(bind=env.team_bind).json()["server"] == "web-v2", 10, "the consumer route")
        # Callers in other namespaces keep the Service's own routing.
        assert {env.call_web().json()["server"] for _ in range(10)} == {"web"}
        # With the Service owner's (producer) route too, the consumer's own route still wins in its namespace.
        env.mesh.write("mesh-route.yaml", MESH_ROUTE)
        env.mesh.wait(lambda: env.call_web(headers={"x-canary": "yes"}).json()["server"] == "web-v2", 10, "producer")
        env.mesh.wait_synced()
        assert {env.call_web(bind=env.team_bind).json()["server"] for _ in range(10)} == {"web-v2"}
        assert env.call_web().json()["server"] == "web"
    finally:
        env.mesh.remove("consumer-route.yaml")
        env.mesh.remove("mesh-route.yaml")
    env.mesh.wait(lambda: env.call_web(bind=env.team_bind).json()["server"] == "web", 10, "consumer route removal")
