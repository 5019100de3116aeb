"""The injected sidecar's health ports, served by a real `istiod-py agent`
running a real Envoy: readiness (15021-style) turns 200 once Envoy is LIVE
with its certificate, and the app probes the injector rewrote
(ISTIO_KUBE_APP_PROBERS) are run against the app from the agent."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.envoy import EnvoyFactory
from tests.support.mesh import Mesh
from tests.support.net import free_port

pytestmark = pytest.mark.e2e


class _App(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 200 if self.path == "/ready" else 302 if self.path == "/moved" else 500
        self.send_response(status)
        self.send_header("Content-Length", "0")
        if status == 302:
            self.send_header("Location", "/elsewhere")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def app() -> Iterator[ThreadingHTTPServer]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _App)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def _get(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_readiness_and_app_probes(tmp_path: Path, envoy_factory: EnvoyFactory, app: ThreadingHTTPServer) -> None:
    app_port = int(app.server_address[1])
    closed_port = free_port()
    probers = {
        "/app-health/web/readyz": {"httpGet": {"path": "/ready", "port": app_port, "scheme": "HTTP"}},
        "/app-health/web/livez": {"httpGet": {"path": "/broken", "port": app_port}, "timeoutSeconds": 2},
        "/app-health/web/startupz": {"tcpSocket": {"port": app_port}},
        "/app-health/other/readyz": {"tcpSocket": {"port": closed_port}},
        "/app-health/other/livez": {"httpGet": {"path": "/moved", "port": app_port}},
    }
    status_port, ready_port = free_port(), free_port()
    mesh = Mesh(tmp_path, envoy_factory)
    mesh.write("svc.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n"
               "spec: {selector: {app: web}, ports: [{name: http, port: 9080}]}\n")  # fmt: skip
    mesh.start_with_ca()
    try:
        mesh.agent_sidecar(
            "web-v1",
            labels={"app": "web"},
            extra_args=["--status-port", str(status_port), "--readiness-port", str(ready_port)],
            env={"ISTIO_KUBE_APP_PROBERS": json.dumps(probers)},
        )
        deadline = time.monotonic() + 20
        while _get(ready_port, "/healthz/ready") != 200:
            assert time.monotonic() < deadline, "readiness port never turned 200"
            time.sleep(0.2)
        assert _get(status_port, "/healthz/ready") == 200
        assert _get(status_port, "/app-health/web/readyz") == 200
        assert _get(status_port, "/app-health/web/livez") == 500  # the app answers 500
        assert _get(status_port, "/app-health/web/startupz") == 200
        assert _get(status_port, "/app-health/other/readyz") == 500  # nothing listens
        assert _get(status_port, "/app-health/other/livez") == 200  # 3xx is healthy, as the kubelet judges
        assert _get(status_port, "/app-health/nope/readyz") == 404
        assert _get(ready_port, "/app-health/web/readyz") == 404  # app probes live on the status port only
        app.shutdown()
        app.server_close()
        assert _get(status_port, "/app-health/web/readyz") == 500
    finally:
        mesh.stop()
