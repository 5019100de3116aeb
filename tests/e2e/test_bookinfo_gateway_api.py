"""Istio's bookinfo Gateway API samples (deploy/samples/bookinfo-gateway-api, unchanged)
through real Envoys: the ingress Gateway + HTTPRoute serve /productpage through a router
labelled as istiod labels the gateway pods it deploys, and the GAMMA routes
(`parentRefs: [{kind: Service, name: reviews}]`) move productpage -> reviews traffic.

The bookinfo mesh is test_bookinfo_tasks's (same fixture, its own instance). What
istiod would deploy for the Gateway is written here as istiod creates it: a Service
`bookinfo-gateway-istio` (port 80 -> the router's 8080) selecting the gateway pod label."""

from __future__ import annotations

import collections
import math

from tests.e2e.test_bookinfo_tasks import SAMPLES, Bookinfo, bookinfo  # noqa: F401  (the module's mesh)
from tests.support.net import allocate_ip
from tests.support.upstreams import Response, http_request

GATEWAY_API = SAMPLES / "bookinfo-gateway-api"
GW_LABEL = "gateway.networking.k8s.io/gateway-name"

# bookinfo-versions.yaml: one Service per workload version, as the Gateway API samples expect.
VERSION_SERVICES = "---\n".join(
    f"""apiVersion: v1
kind: Service
metadata: {{name: {app}-{v}, namespace: default}}
spec:
  ports: [{{port: 9080, name: http}}]
  selector: {{app: {app}, version: {v}}}
"""
    for app, versions in (
        ("reviews", ("v1", "v2", "v3")),
        ("productpage", ("v1",)),
        ("ratings", ("v1",)),
        ("details", ("v1",)),
    )
    for v in versions
)


def gateway_service(ip: str) -> str:
    return f"""apiVersion: v1
kind: Service
metadata: {{name: bookinfo-gateway-istio, namespace: default}}
spec:
  ports: [{{name: http, port: 80, targetPort: 8080}}]
  selector: {{{GW_LABEL}: bookinfo-gateway}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: bookinfo-gateway-istio, namespace: default}}
spec:
  address: {ip}
  ports: {{http: 8080}}
  labels: {{{GW_LABEL}: bookinfo-gateway}}
"""


def test_bookinfo_gateway_api_ingress(bookinfo: Bookinfo) -> None:  # noqa: F811
    mesh = bookinfo.mesh
    ip = allocate_ip()
    mesh.apply(VERSION_SERVICES, gateway_service(ip))
    gw = mesh.gateway("bookinfo-gateway-istio", ip=ip, namespace="default", labels={GW_LABEL: "bookinfo-gateway"})
    try:
        bookinfo.apply(GATEWAY_API / "bookinfo-gateway.yaml")
        mesh.wait_listener(gw, f"{ip}_8080")

        def get(path: str) -> Response:
            return http_request(ip, 8080, path, host="bookinfo.example.com")

        mesh.wait(lambda: get("/productpage").status == 200, 10, "/productpage through the Gateway API gateway")
        r = get("/productpage")
        assert r.json()["name"] == "productpage-v1" and r.json()["path"] == "/productpage"
        assert get("/static/x.css").json()["name"] == "productpage-v1"
        assert get("/api/v1/products/0").json()["name"] == "productpage-v1"
        assert get("/productpage/more").status == 404  # Exact
        assert get("/reviews").status == 404
    finally:
        mesh.delete(GATEWAY_API / "bookinfo-gateway.yaml", sync=False)
        gw.stop()


def within(n: int, seen: int, p: float) -> bool:
    sd = math.sqrt(n * p * (1 - p))
    return n * p - 4 * sd <= seen <= n * p + 4 * sd


def test_bookinfo_gateway_api_mesh_routes(bookinfo: Bookinfo) -> None:  # noqa: F811
    mesh = bookinfo.mesh
    mesh.apply(VERSION_SERVICES)
    try:
        bookinfo.apply(GATEWAY_API / "route-reviews-v3.yaml")
        mesh.wait(lambda: bookinfo.page().reviews_version == "reviews-v3", 10, "all reviews to v3")
        assert set(bookinfo.reviews_versions(20)) == {"reviews-v3"}
        bookinfo.apply(GATEWAY_API / "route-reviews-90-10.yaml")
        mesh.wait(lambda: "reviews-v3" not in bookinfo.reviews_versions(10), 10, "the 90/10 route")
        n = 200
        seen: collections.Counter[str | None] = bookinfo.reviews_versions(n)
        assert set(seen) <= {"reviews-v1", "reviews-v2"} and within(n, seen["reviews-v2"], 0.1), seen
        bookinfo.apply(GATEWAY_API / "route-all-v1.yaml")
        mesh.wait(lambda: set(bookinfo.reviews_versions(10)) == {"reviews-v1"}, 10, "route-all-v1")
    finally:
        mesh.delete(GATEWAY_API / "route-all-v1.yaml")
