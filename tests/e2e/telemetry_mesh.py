"""A bookinfo-shaped mesh for the telemetry e2e tests: an ingress gateway (namespace
istio-system) routes to productpage's sidecar; the productpage app calls reviews
through its own sidecar; reviews v1 and v2 each run behind their own sidecar.
Every hop is a real Envoy:

    client -> gateway -> productpage sidecar (inbound) -> productpage app
           -> productpage sidecar (outbound) -> reviews-vN sidecar (inbound) -> reviews-vN app
"""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.envoy import EnvoyProcess
from tests.support.mesh import Mesh
from tests.support.net import allocate_ip, free_port
from tests.support.upstreams import HttpEchoServer, Response, UpstreamFactory, http_request

# Istio's Envoy Prometheus port, on each workload's own loopback address.
STATS_PORT = 15090

# Headers an Istio-aware app forwards so one request is one trace (Istio's list).
PROPAGATED = (
    "x-request-id",
    "traceparent",
    "tracestate",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
)


class ForwardingApp:
    """productpage: answers every request by calling reviews through its sidecar."""

    def __init__(self, egress_bind: str, upstream_host: str = "reviews:9080") -> None:
        self.host = allocate_ip()
        self.port = free_port(self.host)
        target = (egress_bind, 9080)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                headers = {k: v for k, v in self.headers.items() if k.lower() in PROPAGATED}
                conn = http.client.HTTPConnection(*target, timeout=5)
                try:
                    conn.request("GET", self.path, headers={"Host": upstream_host, **headers})
                    resp = conn.getresponse()
                    body, status = resp.read(), resp.status
                finally:
                    conn.close()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((self.host, self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Bookinfo:
    mesh: Mesh
    gateway_ip: str
    pp_ip: str
    pp_bind: str
    reviews_ips: dict[str, str]
    reviews_apps: dict[str, HttpEchoServer]
    productpage: ForwardingApp
    proxies: dict[str, EnvoyProcess] = field(default_factory=dict)

    def get(self, path: str = "/productpage", headers: dict[str, str] | None = None) -> Response:
        return http_request(self.gateway_ip, 8080, path, host="bookinfo.example.com", headers=headers)


def config(b: Bookinfo) -> str:
    reviews = "".join(
        f"""---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: reviews-{v}, namespace: default}}
spec:
  address: {ip}
  serviceAccount: bookinfo-reviews
  labels: {{app: reviews, version: {v}}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: reviews-{v}, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: reviews, version: {v}}}}}
  ingress:
  - port: {{number: 9080, protocol: HTTP, name: http}}
    defaultEndpoint: {b.reviews_apps[v].host}:{b.reviews_apps[v].port}
  egress:
  - hosts: ["./*", "istio-system/*"]
    port: {{number: 9080, protocol: HTTP, name: http}}
    bind: {allocate_ip()}
"""
        for v, ip in sorted(b.reviews_ips.items())
    )
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: productpage, namespace: default}}
spec:
  selector: {{app: productpage}}
  ports: [{{name: http, port: 9080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: reviews, namespace: default}}
spec:
  selector: {{app: reviews}}
  ports: [{{name: http, port: 9080}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: productpage-v1, namespace: default}}
spec:
  address: {b.pp_ip}
  serviceAccount: bookinfo-productpage
  labels: {{app: productpage, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: productpage, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: productpage}}}}
  ingress:
  - port: {{number: 9080, protocol: HTTP, name: http}}
    defaultEndpoint: {b.productpage.host}:{b.productpage.port}
  egress:
  - hosts: ["./*", "istio-system/*"]
    port: {{number: 9080, protocol: HTTP, name: http}}
    bind: {b.pp_bind}
---
# A fresh upstream connection per request: a request after a config change is served
# by the new listeners, not by a pooled connection still on the old (draining) ones.
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: productpage, namespace: default}}
spec:
  host: productpage
  trafficPolicy: {{connectionPool: {{http: {{maxRequestsPerConnection: 1}}}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: default}}
spec:
  host: reviews
  trafficPolicy: {{connectionPool: {{http: {{maxRequestsPerConnection: 1}}}}}}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: bookinfo-gateway, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 8080, name: http, protocol: HTTP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: bookinfo, namespace: default}}
spec:
  hosts: ["*"]
  gateways: [bookinfo-gateway]
  http:
  - route:
    - destination: {{host: productpage, port: {{number: 9080}}}}
{reviews}"""


def start_bookinfo(
    mesh: Mesh, upstreams: UpstreamFactory, versions: tuple[str, ...] = ("v1",), extra: str = ""
) -> Bookinfo:
    pp_bind = allocate_ip()
    b = Bookinfo(
        mesh,
        gateway_ip=allocate_ip(),
        pp_ip=allocate_ip(),
        pp_bind=pp_bind,
        reviews_ips={v: allocate_ip() for v in versions},
        reviews_apps={v: upstreams.http(f"reviews-{v}") for v in versions},
        productpage=ForwardingApp(pp_bind),
    )
    mesh.write("bookinfo.yaml", config(b) + ("---\n" + extra if extra else ""))
    mesh.start()
    b.proxies["gateway"] = mesh.gateway(
        "istio-ingressgateway",
        ip=b.gateway_ip,
        namespace="istio-system",
        labels={"istio": "ingressgateway"},
        stats_port=STATS_PORT,
    )
    b.proxies["productpage"] = mesh.sidecar(
        "productpage-v1", ip=b.pp_ip, labels={"app": "productpage", "version": "v1"},
        service_account="bookinfo-productpage", stats_port=STATS_PORT,
    )  # fmt: skip
    for v, ip in b.reviews_ips.items():
        b.proxies[f"reviews-{v}"] = mesh.sidecar(
            f"reviews-{v}",
            ip=ip,
            labels={"app": "reviews", "version": v},
            service_account="bookinfo-reviews",
            stats_port=STATS_PORT,
        )
    mesh.wait_listener(b.proxies["gateway"], f"{b.gateway_ip}_8080")
    mesh.wait_listener(b.proxies["productpage"], f"{pp_bind}_9080")
    for v, ip in b.reviews_ips.items():
        mesh.wait_listener(b.proxies[f"reviews-{v}"], f"{ip}_9080")
    mesh.wait(lambda: b.get().status == 200, 15, "a request through gateway, productpage and reviews")
    return b
