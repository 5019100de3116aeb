"""Request metrics end to end: real Envoys emit Istio's metrics through the stats
access logger, a real Prometheus (Debian's package, deploy/prometheus/prometheus.yml)
scrapes them, and Istio's own PromQL (the issue's per-version split, Istio's service
dashboard) reads them back."""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from istiod_py.agent.metrics_merge import MetricsMerger
from tests.e2e.telemetry_mesh import STATS_PORT, start_bookinfo
from tests.support.envoy import EnvoyFactory, EnvoyProcess
from tests.support.mesh import Mesh
from tests.support.net import allocate_ip
from tests.support.prometheus import Prometheus
from tests.support.upstreams import LoopThread, UpstreamFactory, http_request, tcp_echo, tcp_exchange

pytestmark = pytest.mark.e2e

REVIEWS_VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /fault}}]
    fault: {abort: {httpStatus: 500, percentage: {value: 100}}}
    route: [{destination: {host: reviews, subset: v1}}]
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 80}
    - {destination: {host: reviews, subset: v2}, weight: 20}
"""
N = 300
REVIEWS = 'reporter="destination",destination_service_name="reviews"'
SPLIT = f"sum(rate(istio_requests_total{{{REVIEWS}}}[1m])) by (destination_version)"
SVC = 'destination_service=~"reviews.default.svc.cluster.local"'
# Three panels of Istio's service dashboard (istio-service-dashboard.json), for reviews.
DASHBOARD = [
    f'round(sum(irate(istio_requests_total{{reporter=~"destination",{SVC}}}[5m])), 0.001)',
    f'sum(irate(istio_requests_total{{reporter=~"destination",{SVC},response_code!~"5.*"}}[5m])) / '
    f'sum(irate(istio_requests_total{{reporter=~"destination",{SVC}}}[5m]))',
    f"histogram_quantile(0.50, sum(irate(istio_request_duration_milliseconds_bucket"
    f'{{reporter=~"destination",{SVC}}}[1m])) by (le))',
]


@pytest.fixture
def mesh(tmp_path: Path, envoy_factory: EnvoyFactory) -> Iterator[Mesh]:
    m = Mesh(tmp_path, envoy_factory)
    yield m
    m.stop()


def test_per_version_split_fault_codes_and_dashboard(mesh: Mesh, upstreams: UpstreamFactory, tmp_path: Path) -> None:
    b = start_bookinfo(mesh, upstreams, versions=("v1", "v2"), extra=REVIEWS_VS)
    # Istio's 15090 /stats/prometheus on each workload's address.
    ips = {"gateway": b.gateway_ip, "productpage": b.pp_ip, **{f"reviews-{v}": ip for v, ip in b.reviews_ips.items()}}
    targets = [(f"{ip}:{STATS_PORT}", {"proxy": name}) for name, ip in ips.items()]
    prom = Prometheus(tmp_path / "prometheus", targets, istiod=f"{mesh.host}:{mesh.debug_port}").start()
    try:
        # The start-up requests, once scraped: the baseline.
        before = mesh.wait(
            lambda: prom.by(f"sum(istio_requests_total{{{REVIEWS}}}) by (destination_version)", "destination_version"),
            15,
            "the first scrape",
        )
        for _ in range(N):
            assert b.get().status == 200
        for _ in range(5):
            assert b.get("/fault").status == 500

        def counted() -> dict[str, float] | None:
            got = prom.by(f"sum(istio_requests_total{{{REVIEWS}}}) by (destination_version)", "destination_version")
            diff = {v: got.get(v, 0) - before.get(v, 0) for v in got}
            return diff if sum(diff.values()) >= N else None

        counts = mesh.wait(counted, 30, f"{N} reviews requests in Prometheus")
        assert sum(counts.values()) == N, counts
        # 80/20 within binomial bounds (4 standard deviations).
        sd = math.sqrt(N * 0.2 * 0.8)
        assert abs(counts["v2"] - 0.2 * N) <= 4 * sd, counts
        # The PromQL, as written: per-version request rates, in the same proportion.
        split = prom.by(SPLIT, "destination_version")
        assert set(split) == {"v1", "v2"}, split
        share = split["v2"] / (split["v1"] + split["v2"])
        assert abs(share - 0.2) <= 4 * math.sqrt(0.2 * 0.8 / N) + 0.02, split

        # The injected fault: reported by productpage's sidecar (the source) as 500 for reviews.
        fault_q = (
            'sum(istio_requests_total{reporter="source",destination_service_name="reviews",response_code="500",'
            'source_app="productpage",destination_service="reviews.default.svc.cluster.local"})'
        )
        mesh.wait(lambda: prom.scalar(fault_q) == 5, 15, "5 faults in Prometheus")
        ok = prom.query(
            'istio_requests_total{reporter="destination",destination_service_name="reviews",response_code="200"}'
        )
        labels = ok[0]["metric"]
        assert labels["destination_workload"] in ("reviews-v1", "reviews-v2")
        assert labels["destination_workload_namespace"] == "default"
        assert labels["destination_app"] == "reviews" and labels["request_protocol"] == "http"
        assert labels["destination_service"] == "reviews.default.svc.cluster.local"
        src = prom.query('istio_requests_total{reporter="source",source_workload="productpage-v1",response_code="200"}')
        assert {r["metric"]["destination_version"] for r in src} == {"v1", "v2"}
        assert {r["metric"]["destination_workload"] for r in src} == {"reviews-v1", "reviews-v2"}

        # Dashboards look at live traffic (irate: the last two samples), so keep some flowing.
        stop = threading.Event()

        def traffic() -> None:
            while not stop.is_set():
                b.get()
                time.sleep(0.05)

        pump = threading.Thread(target=traffic, daemon=True)
        pump.start()
        try:
            for q in DASHBOARD:

                def answered(q: str = q) -> bool:
                    res = prom.query(q)
                    return bool(res) and not math.isnan(float(res[0]["value"][1]))

                mesh.wait(answered, 20, q)
        finally:
            stop.set()
            pump.join(5)
        # The control plane is scraped too, under istiod's names.
        assert prom.scalar('sum(pilot_xds_pushes{type="lds"})') >= 1
    finally:
        prom.stop()


NAMESPACE_METRICS = """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: ns-metrics, namespace: default}
spec:
  metrics:
  - providers: [{name: prometheus}]
    overrides:
    - match: {metric: REQUEST_COUNT}
      disabled: true
    - match: {metric: REQUEST_DURATION, mode: CLIENT_AND_SERVER}
      tagOverrides:
        request_host: {value: request.host}
        grpc_response_status: {operation: REMOVE}
"""


def envoy_samples(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name + "{")]


def requests_total(proxy: EnvoyProcess) -> float:
    _, text = proxy.admin_get("/stats/prometheus")
    return sum(float(line.rsplit(" ", 1)[1]) for line in envoy_samples(text, "envoy_istio_requests_total"))


def test_namespace_telemetry_disables_a_metric_and_overrides_a_tag(mesh: Mesh, upstreams: UpstreamFactory) -> None:
    """A Telemetry in namespace default changes its proxies only: the gateway (istio-system) keeps counting."""
    b = start_bookinfo(mesh, upstreams)
    mesh.apply(NAMESPACE_METRICS)
    before = {name: requests_total(p) for name, p in b.proxies.items()}
    for _ in range(5):
        assert b.get().status == 200
    after = {name: requests_total(p) for name, p in b.proxies.items()}
    assert after["gateway"] - before["gateway"] == 5
    assert after["productpage"] == before["productpage"] and after["reviews-v1"] == before["reviews-v1"]
    _, text = b.proxies["reviews-v1"].admin_get("/stats/prometheus")
    durations = envoy_samples(text, "envoy_istio_request_duration_milliseconds_count")
    assert any('request_host="reviews:9080"' in line for line in durations), durations
    assert not any("grpc_response_status" in line and "request_host" in line for line in durations)
    _, gw_text = b.proxies["gateway"].admin_get("/stats/prometheus")
    assert not any("request_host" in line for line in gw_text.splitlines())


def tcp_config(db_ip: str, app: str, client_bind: str) -> str:
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: db, namespace: default}}
spec:
  selector: {{app: db}}
  ports: [{{name: tcp-db, port: 5432}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: db-1, namespace: default}}
spec: {{address: {db_ip}, labels: {{app: db, version: v7}}}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: db, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: db}}}}
  ingress:
  - port: {{number: 5432, protocol: TCP, name: tcp-db}}
    defaultEndpoint: {app}
  egress:
  - hosts: ["./*"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: client, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: client}}}}
  egress:
  - port: {{number: 5432, protocol: TCP, name: tcp-db}}
    bind: {client_bind}
    hosts: ["./*"]
"""


def tcp_counter(proxy: EnvoyProcess, name: str, **labels: str) -> float:
    _, text = proxy.admin_get("/stats/prometheus")
    total = 0.0
    for line in envoy_samples(text, f"envoy_istio_{name}"):
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_tcp_byte_and_connection_counters(mesh: Mesh, upstreams: UpstreamFactory) -> None:
    app = upstreams.tcp("db-app")
    db_ip, client_bind = allocate_ip(), allocate_ip()
    mesh.write("tcp.yaml", tcp_config(db_ip, f"{app.host}:{app.port}", client_bind))
    mesh.start()
    db = mesh.sidecar("db-1", ip=db_ip, labels={"app": "db", "version": "v7"})
    client = mesh.sidecar("client", labels={"app": "client"})
    mesh.wait_listener(client, f"{client_bind}_5432")
    mesh.wait_listener(db, f"{db_ip}_5432")
    mesh.wait(lambda: tcp_echo(client_bind, 5432, "x").endswith(": x"), 10, "tcp through two sidecars")
    for _ in range(3):
        assert tcp_exchange(client_bind, 5432, ["a" * 100, "b" * 100]) == [
            f"db-app: {'a' * 100}",
            f"db-app: {'b' * 100}",
        ]
    dest = {"reporter": "destination", "destination_app": "db", "destination_version": "v7", "request_protocol": "tcp"}
    src = {"reporter": "source", "destination_service": "db.default.svc.cluster.local", "destination_version": "v7"}

    def counted() -> bool:
        return (
            tcp_counter(db, "tcp_connections_closed_total", **dest) >= 4
            and tcp_counter(client, "tcp_connections_closed_total", **src) >= 4
        )

    mesh.wait(counted, 10, "tcp connection counters")
    # 3 x 2 lines of 101 bytes, the replies prefixed "db-app: ", plus the probe ("x\n" -> "db-app: x\n").
    received, sent = 3 * 2 * 101 + 2, 3 * 2 * (101 + len("db-app: ")) + len("db-app: x\n")
    assert tcp_counter(db, "tcp_received_bytes_total", **dest) == received
    assert tcp_counter(db, "tcp_sent_bytes_total", **dest) == sent
    # The client's sidecar sends what the server's receives (its sent = bytes to the upstream).
    assert tcp_counter(client, "tcp_received_bytes_total", **src) == received
    assert tcp_counter(db, "tcp_connections_opened_total", **dest) == tcp_counter(
        db, "tcp_connections_closed_total", **dest
    )


def test_agent_merged_endpoint_serves_istio_names_and_app_metrics(mesh: Mesh, upstreams: UpstreamFactory) -> None:
    """Istio's 15020 merge: Envoy's stats with istio_* names, then the app's own metrics."""
    b = start_bookinfo(mesh, upstreams)
    assert b.get().status == 200
    app_metrics = "# TYPE app_orders_total counter\napp_orders_total 7\n"

    class AppMetrics(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = app_metrics.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    app_host = allocate_ip()
    app_server = ThreadingHTTPServer((app_host, 0), AppMetrics)
    threading.Thread(target=app_server.serve_forever, daemon=True).start()
    reviews = b.proxies["reviews-v1"]
    loop = LoopThread("merger")
    merger = MetricsMerger(
        b.reviews_ips["v1"], 15020, f"{reviews.admin_host}:{reviews.admin_port}",
        f"http://{app_host}:{app_server.server_address[1]}/metrics",
    )  # fmt: skip
    loop.run(merger.start())
    try:
        r = http_request(b.reviews_ips["v1"], 15020, "/stats/prometheus")
        assert r.status == 200
        text = r.text
        assert "# TYPE istio_requests_total counter" in text
        assert re.search(r'^istio_requests_total\{.*reporter="destination".*\} [1-9]', text, re.M), text[:2000]
        assert "envoy_istio_" not in text
        assert re.search(r"^envoy_server_live(\{\})? 1", text, re.M)  # Envoy's own stats keep their names
        assert text.endswith(app_metrics)
    finally:
        loop.run(merger.stop())
        loop.close()
        app_server.shutdown()
        app_server.server_close()
