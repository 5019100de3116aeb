"""The agent's one server on 15020, as pilot-agent's: a pod injected by the real
injector (prometheus.io/* annotations and an HTTP readiness probe) is run as a
real `istiod-py agent` + real Envoy on its own loopback address, with the two
environment variables the injector wrote (ISTIO_PROMETHEUS_ANNOTATIONS,
ISTIO_KUBE_APP_PROBERS). Following the pod's rewritten annotations and probe:
one GET of <pod>:15020/stats/prometheus has Envoy's request metrics under Istio's
names and the app's own metric; /app-health/... probes the app; 15021 (Envoy's
listener, forwarding to the agent) says ready; POST /quitquitquit stops the agent."""

from __future__ import annotations

import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from istiod_py.inject.pod import inject_pod
from istiod_py.inject.template import WorkloadMeta
from istiod_py.inject.values import InjectionValues
from tests.support.envoy import EnvoyFactory
from tests.support.mesh import Mesh
from tests.support.net import allocate_ip
from tests.support.upstreams import http_request

pytestmark = pytest.mark.e2e

APP_METRICS = "# TYPE shop_orders_total counter\nshop_orders_total 42\n"


class _App(BaseHTTPRequestHandler):
    healthy = True

    def do_GET(self) -> None:
        if self.path == "/metrics":
            status, body = 200, APP_METRICS.encode()
        elif self.path == "/healthz":
            status, body = (200 if _App.healthy else 503), b"ok\n"
        else:
            status, body = 200, b"hello\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def app() -> Iterator[ThreadingHTTPServer]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _App)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def _get(host: str, port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode()


def _injected(app_port: int) -> dict[str, Any]:
    pod = {
        "metadata": {
            "name": "shop-1",
            "namespace": "default",
            "labels": {"app": "shop"},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(app_port),
                            "prometheus.io/path": "/metrics"},
        },
        "spec": {
            "containers": [{
                "name": "shop",
                "image": "shop",
                "ports": [{"containerPort": app_port}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": app_port}},
            }]
        },
    }  # fmt: skip
    return inject_pod(pod, InjectionValues(), WorkloadMeta("shop", "default", "Deployment", "apps/v1"))


def test_one_server_on_15020(tmp_path: Path, envoy_factory: EnvoyFactory, app: ThreadingHTTPServer) -> None:
    app_port = int(app.server_address[1])
    pod = _injected(app_port)
    ann = pod["metadata"]["annotations"]
    proxy = next(c for c in pod["spec"]["containers"] if c["name"] == "istio-proxy")
    env = {e["name"]: e["value"] for e in proxy["env"] if e["name"].startswith("ISTIO_") and "value" in e}
    args = proxy["args"]
    status_port, ready_port = (int(args[args.index(f) + 1]) for f in ("--status-port", "--readiness-port"))
    probe = next(c for c in pod["spec"]["containers"] if c["name"] == "shop")["readinessProbe"]["httpGet"]
    assert (ann["prometheus.io/port"], status_port, probe["port"]) == ("15020", 15020, 15020)

    ip = allocate_ip()  # the pod's address: its 15020/15021 are its own
    mesh = Mesh(tmp_path, envoy_factory)
    mesh.write("shop.yaml", f"""
apiVersion: v1
kind: Service
metadata: {{name: shop, namespace: default}}
spec:
  selector: {{app: shop}}
  ports: [{{name: http, port: 9080}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: shop-1, namespace: default}}
spec:
  address: {ip}
  labels: {{app: shop}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: shop, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: shop}}}}
  ingress:
  - port: {{number: 9080, protocol: HTTP, name: http}}
    defaultEndpoint: 127.0.0.1:{app_port}
""")  # fmt: skip
    mesh.start_with_ca()
    try:
        agent = mesh.agent_sidecar(
            "shop-1",
            ip=ip,
            labels={"app": "shop"},
            extra_args=["--status-address", ip, "--status-port", str(status_port), "--readiness-port", str(ready_port)],
            env={k: env[k] for k in ("ISTIO_PROMETHEUS_ANNOTATIONS", "ISTIO_KUBE_APP_PROBERS")},
        )
        mesh.wait(lambda: _get(ip, ready_port, "/healthz/ready")[0] == 200, 20, "15021 ready through Envoy")
        mesh.wait_listener(agent, f"{ip}_9080")
        for _ in range(3):
            assert http_request(ip, 9080, "/buy", host="shop.default.svc.cluster.local").status == 200

        def merged() -> str | None:
            code, text = _get(ip, int(ann["prometheus.io/port"]), ann["prometheus.io/path"])
            assert code == 200, text[:500]
            ok = re.search(r'^istio_requests_total\{.*reporter="destination".*\} 3$', text, re.M)
            return text if ok else None

        text = mesh.wait(merged, 10, "the three requests in the merged metrics")
        assert "# TYPE istio_requests_total counter" in text
        assert "envoy_istio_" not in text
        assert re.search(r"^envoy_server_live(\{\})? 1", text, re.M)
        assert re.search(r"^istio_agent_scrapes_total [1-9]", text, re.M)
        assert text.endswith(APP_METRICS)  # the app's own metrics, last, from the annotations the injector moved

        assert _get(ip, probe["port"], probe["path"]) == (200, "ok\n")  # the rewritten probe reaches the app
        _App.healthy = False
        try:
            assert _get(ip, probe["port"], probe["path"])[0] == 503  # the app's answer, as pilot-agent passes it
        finally:
            _App.healthy = True
        assert _get(ip, ready_port, "/app-health/shop/readyz")[0] == 404  # 15021 forwards readiness only
        assert _get(ip, ready_port, "/stats/prometheus")[0] == 404

        req = urllib.request.Request(f"http://{ip}:{status_port}/quitquitquit", method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200
        assert agent.proc is not None
        agent.proc.wait(15)  # the agent stops its Envoy and exits
        assert agent.proc.returncode == 0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                _get(ip, ready_port, "/healthz/ready")
            except OSError:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("Envoy's readiness listener still answers after /quitquitquit")
    finally:
        mesh.stop()
