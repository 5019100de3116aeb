"""`istiod-py analyze --kubeconfig` against a real API server: the cluster's Istio
resources are analyzed (IST0101 for a VirtualService whose host no Service
provides), and files are applied on top (a Service from -f makes it clean; a file's
VirtualService replaces the cluster's of the same name), as istioctl analyze does."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

from tests.support.kube import KubeCluster


def analyze(kube: KubeCluster, *args: str) -> tuple[int, list[dict[str, str]]]:
    r = subprocess.run(
        [sys.executable, "-m", "istiod_py.cli", "analyze", "--kubeconfig", str(kube.kubeconfig), "-o", "json", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode in (0, 79), r.stderr
    return r.returncode, json.loads(r.stdout)["messages"]


def test_analyze_cluster_and_files_on_top(kube: KubeCluster, tmp_path: Path) -> None:
    name = f"an-{secrets.token_hex(3)}"
    kube.apply(f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{name}]
  http: [{{route: [{{destination: {{host: {name}}}}}]}}]
""")
    origin = f"VirtualService default/{name}"
    rc, msgs = analyze(kube)
    mine = [m for m in msgs if m["origin"] == origin]
    assert rc == 79 and [(m["code"], m["message"]) for m in mine] == [
        ("IST0101", f'Referenced host not found: "{name}"')
    ]

    svc = tmp_path / "svc.yaml"
    svc.write_text(f"""apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: 80}}]
""")
    _, msgs = analyze(kube, "-f", str(svc))
    assert [m for m in msgs if m["origin"] == origin] == []

    # A file's VirtualService of the same name replaces the cluster's.
    vs = tmp_path / "vs.yaml"
    vs.write_text(f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{name}]
  http: [{{route: [{{destination: {{host: other-{name}}}}}]}}]
""")
    _, msgs = analyze(kube, "-f", str(svc), "-f", str(vs))
    mine = [m for m in msgs if m["origin"] == origin]
    assert [m["message"] for m in mine] == [f'Referenced host not found: "other-{name}"']
    assert mine[0]["reference"] == str(vs)


def test_analyze_unreachable_cluster_is_exit_4(tmp_path: Path) -> None:
    bad = tmp_path / "kubeconfig"
    bad.write_text("""apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
""")
    r = subprocess.run(
        [sys.executable, "-m", "istiod_py.cli", "analyze", "--kubeconfig", str(bad), "--timeout", "3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 4, (r.returncode, r.stderr)
    assert r.stderr.startswith("istiod-py: error: Kubernetes") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
