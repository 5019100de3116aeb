"""`istiod-py version --debug-address`: the control plane's version from /version and
each connected proxy's Envoy and agent versions from /debug/syncz (node metadata
that `istiod-py agent` sets), with a real agent and Envoy."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.envoy import EnvoyFactory, envoy_binary
from tests.support.mesh import Mesh

pytestmark = pytest.mark.e2e

SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: app, namespace: default}
spec:
  selector: {app: app}
  ports: [{name: http, port: 9080}]
"""


def version(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "istiod_py.cli", "version", *args], capture_output=True, text=True, timeout=30
    )


def test_version_lists_control_plane_and_proxies(tmp_path: Path, envoy_factory: EnvoyFactory) -> None:
    mesh = Mesh(tmp_path, envoy_factory)
    mesh.write("svc.yaml", SERVICE)
    mesh.start_with_ca()
    try:
        mesh.agent_sidecar("app-v1", labels={"app": "app"})
        envoy_release = subprocess.run([envoy_binary(), "--version"], capture_output=True, text=True).stdout
        addr = f"{mesh.host}:{mesh.debug_port}"
        deadline = time.monotonic() + 20
        while True:
            r = version("--debug-address", addr, "-o", "json")
            assert r.returncode == 0, r.stderr
            report = json.loads(r.stdout)
            if report["proxies"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert report["controlPlane"]["version"] == report["client"]["version"] != "unknown"
        [proxy] = report["proxies"]
        assert proxy["proxy"].startswith("app-v1.")
        assert proxy["envoyVersion"] != "unknown" and f"/{proxy['envoyVersion']}/" in envoy_release
        assert proxy["agentVersion"] == report["client"]["version"]
        table = version("--debug-address", addr).stdout
        assert "control plane" in table and f"envoy {proxy['envoyVersion']}" in table
    finally:
        mesh.stop()
    # The control plane is gone: a one-line error and exit code 4 (unavailable).
    r = version("--debug-address", addr, "--timeout", "2")
    assert r.returncode == 4
    assert r.stderr.startswith("istiod-py: error:") and "Traceback" not in r.stderr
