"""The one-host node (`istiod-py node`) against the real API server, scheduler and
controller-manager: Deployments' Pods run as network namespaces, become
Running/Ready with their own IPs, land in EndpointSlices, answer on their
Service's ClusterIP from a pod without a sidecar, and vanish with their
namespaces when deleted."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from istiod_py.kube.client import JsonObj
from istiod_py.node.netns import require_netns
from tests.support.capture_pods import HTTP_GET
from tests.support.envoy import EnvoyFactory, envoy_factory_context
from tests.support.kube import KubeCluster, wait
from tests.support.mesh import Mesh

APP = "ghcr.io/istiod-py/app:latest"
BOOKINFO = "docker.io/istio/examples-bookinfo-{}-{}:1.20.2"


@dataclass
class NodeProc:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def netns(self, pod: JsonObj) -> str:
        return f"ipy{self.proc.pid}-{str(pod['metadata']['uid']).replace('-', '')[:10]}"

    def log_tail(self) -> str:
        out = self.log.read_text(errors="replace").splitlines()[-60:]
        for f in sorted((self.log.parent / "run" / self.name / "pods").glob("*/*.log")):
            out += [f"--- {f.parent.name[:8]}/{f.name}", *f.read_text(errors="replace").splitlines()[-15:]]
        return "\n".join(out)


@pytest.fixture
def node(kube: KubeCluster) -> Iterator[NodeProc]:
    require_netns()
    name = f"node-{secrets.token_hex(3)}"
    state = Path(tempfile.mkdtemp(prefix="ipy-node-"))
    os.chmod(state, 0o755)
    log = state / "node.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "istiod_py.cli", "node", "--kubeconfig", str(kube.kubeconfig), "--name", name,
             "--state-dir", str(state / "run"), "--resync", "1"],
            stdout=f, stderr=subprocess.STDOUT,
        )  # fmt: skip
    n = NodeProc(name, proc, log)
    try:
        wait(lambda: _schedulable(kube, name) or proc.poll() is not None, 30, f"Node {name} Ready without taints")
        assert proc.poll() is None, n.log_tail()
        yield n
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        left = [ns for ns in _netns_list() if ns.startswith(f"ipy{proc.pid}-")]
        left += [str(d) for d in Path("/etc/netns").glob(f"ipy{proc.pid}-*")]  # the pods' hosts files
        tail = n.log_tail()
        shutil.rmtree(state, ignore_errors=True)
        assert not left, f"namespaces left after the node stopped: {left}\n{tail}"
        assert proc.returncode == 0, tail


def nwait(node: NodeProc, cond: Callable[[], Any], timeout: float, what: str) -> Any:
    """wait(), with the node's log in the failure."""
    try:
        return wait(cond, timeout, what)
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- node log ---\n{node.log_tail()}") from None


def _schedulable(kube: KubeCluster, name: str) -> bool:
    node = kube.get(f"/api/v1/nodes/{name}")
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions") or [])
    return ready and not (node.get("spec") or {}).get("taints")


def _netns_list() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def deployment(
    ns: str, name: str, image: str, labels: dict[str, str], port: int, node: str, replicas: int = 1
) -> JsonObj:
    container: dict[str, Any] = {
        "name": name.split("-")[0],
        "image": image,
        "ports": [{"containerPort": port}],
        "readinessProbe": {"httpGet": {"path": "/health", "port": port}, "periodSeconds": 1},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                # Other tests' Nodes in this session keep the not-ready taint, but pin anyway.
                "spec": {"nodeSelector": {"kubernetes.io/hostname": node}, "containers": [container]},
            },
        },
    }


def service(ns: str, name: str, port: int, target: int, selector: dict[str, str]) -> JsonObj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": port, "targetPort": target}]},
    }


def pods(kube: KubeCluster, ns: str, selector: str) -> list[JsonObj]:
    out = kube.client.get(f"/api/v1/namespaces/{ns}/pods", [("labelSelector", selector)])
    return list(out.get("items") or [])


def ready_pods(kube: KubeCluster, ns: str, selector: str, count: int) -> list[JsonObj]:
    items = pods(kube, ns, selector)
    ok = [
        p
        for p in items
        if p.get("status", {}).get("phase") == "Running"
        and p["status"].get("podIP")
        and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])
    ]
    return ok if len(ok) == count and len(items) == count else []


def http_get(netns: str, host: str, port: int, path: str = "/") -> dict[str, Any]:
    proc = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", HTTP_GET, host, str(port), path, "{}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, f"GET http://{host}:{port}{path} in {netns}: {proc.stderr[-800:]}"
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_deployment_runs_ready_in_slices_and_reachable_by_cluster_ip(kube: KubeCluster, node: NodeProc) -> None:
    ns = kube.namespace("node")
    labels = {"app": "web", "version": "v1"}
    kube.apply(
        deployment(ns, "web", APP, labels, 8080, node.name, replicas=2),
        service(ns, "web", 80, 8080, {"app": "web"}),
        deployment(ns, "client", APP, {"app": "client"}, 8080, node.name),
    )
    web = nwait(node, lambda: ready_pods(kube, ns, "app=web", 2), 90, "2 web pods Running/Ready")
    client = wait(lambda: ready_pods(kube, ns, "app=client", 1), 60, "client pod Ready")[0]
    ips = {p["status"]["podIP"] for p in web}
    assert len(ips) == 2 and all(ip.startswith("10.244.") for ip in ips)
    for p in web:
        (st,) = p["status"]["containerStatuses"]
        assert st["ready"] and "running" in st["state"], st
    wait(lambda: kube.slice_addresses(ns, "web") == ips, 30, "EndpointSlices list both pods")

    vip = kube.get(f"/api/v1/namespaces/{ns}/services/web")["spec"]["clusterIP"]
    assert vip.startswith("10.96.")
    for _ in range(3):
        r = http_get(node.netns(client), vip, 80, "/hello")
        assert r["status"] == 200 and json.loads(r["body"])["name"] == "web-v1", r
    # The same Service by name: the node's hosts file inside the pod.
    r = http_get(node.netns(client), "web", 80, "/by-name")
    assert r["status"] == 200 and json.loads(r["body"])["path"] == "/by-name"

    netns = {node.netns(p) for p in web}
    assert netns <= set(_netns_list())
    kube.client.delete(f"/apis/apps/v1/namespaces/{ns}/deployments/web")
    nwait(node, lambda: not pods(kube, ns, "app=web"), 60, "web pods deleted")
    wait(lambda: not (netns & set(_netns_list())), 30, "the web pods' namespaces deleted")
    wait(lambda: not kube.slice_addresses(ns, "web"), 30, "EndpointSlices emptied")


def test_unknown_image_reports_err_image_pull(kube: KubeCluster, node: NodeProc) -> None:
    ns = kube.namespace("node")
    kube.apply(deployment(ns, "nginx", "nginx:1.27", {"app": "nginx"}, 80, node.name))

    def waiting() -> str:
        for p in pods(kube, ns, "app=nginx"):
            for st in p.get("status", {}).get("containerStatuses") or []:
                w = st.get("state", {}).get("waiting") or {}
                if w.get("reason") == "ErrImagePull":
                    return str(w.get("message"))
        return ""

    message = nwait(node, waiting, 60, "ErrImagePull status")
    assert "nginx:1.27" in message and ns in message
    (pod,) = pods(kube, ns, "app=nginx")
    assert pod["status"]["phase"] == "Pending"
    assert not any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"]["conditions"])


def test_bookinfo_images_call_each_other(kube: KubeCluster, node: NodeProc) -> None:
    ns = kube.namespace("node")
    objs: list[JsonObj] = []
    for svc, version in (("productpage", "v1"), ("details", "v1"), ("reviews", "v2"), ("ratings", "v1")):
        labels = {"app": svc, "version": version}
        objs += [
            deployment(ns, f"{svc}-{version}", BOOKINFO.format(svc, version), labels, 9080, node.name),
            service(ns, svc, 9080, 9080, {"app": svc}),
        ]
    objs.append(deployment(ns, "client", APP, {"app": "client"}, 8080, node.name))
    kube.apply(*objs)
    for svc in ("productpage", "details", "reviews", "ratings", "client"):
        nwait(node, lambda s=svc: ready_pods(kube, ns, f"app={s}", 1), 90, f"{svc} Ready")
    client = ready_pods(kube, ns, "app=client", 1)[0]

    def chain() -> dict[str, Any]:
        # Each pod's service rules follow the EndpointSlices within a sync (as kube-proxy lags).
        page: dict[str, Any] = json.loads(http_get(node.netns(client), "productpage", 9080, "/productpage")["body"])
        return page if all(u.get("status") == 200 for u in page["upstreams"]) else {}

    page = nwait(node, chain, 30, "productpage -> details, reviews -> ratings")
    assert page["name"] == "productpage-v1"
    calls = {u["upstream"]: u for u in page["upstreams"]}
    assert calls["details:9080"]["response"]["name"] == "details-v1"
    reviews = calls["reviews:9080"]["response"]
    assert reviews["name"] == "reviews-v2" and reviews["path"] == "/reviews/0"
    (ratings,) = reviews["upstreams"]
    assert ratings["status"] == 200 and ratings["response"]["name"] == "ratings-v1", reviews


PROXY = "ghcr.io/istiod-py/proxy:latest"


def sidecar_pod(ns: str, name: str, labels: dict[str, str], discovery: str, ca: str) -> JsonObj:
    """A Pod shaped as the injector shapes it (istio-init + istio-proxy, their volumes),
    with the agent flags main's `istiod-py agent` has; admin on the pod IP, excluded
    from capture, so the test reads Envoy's stats across the bridge."""
    field = {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace", "INSTANCE_IP": "status.podIP",
             "SERVICE_ACCOUNT": "spec.serviceAccountName"}  # fmt: skip
    env = [{"name": k, "valueFrom": {"fieldRef": {"fieldPath": v}}} for k, v in field.items()]
    lbl = ",".join(f"{k}={v}" for k, v in labels.items())
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "initContainers": [{
                "name": "istio-init", "image": PROXY,
                "args": ["iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*",
                         "-b", "*", "-d", "15090,15021,15020,15000"],
                "securityContext": {"runAsUser": 0, "runAsGroup": 0,
                                    "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]}},
            }],
            "containers": [
                {"name": "app", "image": APP, "ports": [{"containerPort": 8080}]},
                {
                    "name": "istio-proxy", "image": PROXY, "env": env,
                    "args": ["agent", "--name", "$(POD_NAME)", "--ip", "$(INSTANCE_IP)",
                             "--namespace", "$(POD_NAMESPACE)", "--service-account", "$(SERVICE_ACCOUNT)",
                             "--labels", lbl, "--interception-mode", "REDIRECT",
                             "--discovery-address", discovery, "--ca-address", ca,
                             "--root-cert", "/var/run/secrets/istio/root-cert.pem",
                             "--token-file", "/var/run/secrets/tokens/istio-token",
                             "--workdir", "/etc/istio/proxy", "--admin-address", "$(INSTANCE_IP)",
                             "--admin-port", "15000"],
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": 15000}, "periodSeconds": 1},
                    "securityContext": {"runAsUser": 1337, "runAsGroup": 1337},
                    "volumeMounts": [
                        {"mountPath": "/var/run/secrets/istio", "name": "istiod-ca-cert"},
                        {"mountPath": "/etc/istio/proxy", "name": "istio-envoy"},
                        {"mountPath": "/var/run/secrets/tokens", "name": "istio-token"},
                    ],
                },
            ],
            "volumes": [
                {"name": "istio-envoy", "emptyDir": {"medium": "Memory"}},
                {"name": "istio-token", "projected": {"sources": [{"serviceAccountToken": {
                    "audience": "istio-ca", "expirationSeconds": 43200, "path": "istio-token"}}]}},
                {"name": "istiod-ca-cert", "configMap": {"name": "istio-ca-root-cert"}},
            ],
        },
    }  # fmt: skip


@pytest.fixture
def envoy_factory(tmp_path: Path) -> Iterator[EnvoyFactory]:
    with envoy_factory_context(tmp_path / "envoy") as factory:
        yield factory


def test_sidecar_pod_runs_init_and_agent_and_captures(
    kube: KubeCluster, node: NodeProc, tmp_path: Path, envoy_factory: EnvoyFactory
) -> None:
    bridge = next(a["address"] for a in kube.get(f"/api/v1/nodes/{node.name}")["status"]["addresses"]
                  if a["type"] == "InternalIP")  # fmt: skip
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}})
    # The control plane on the node's bridge, where the pods' agents reach it (their
    # UID-1337 traffic is exempt from capture); CA tokens checked by TokenReview.
    mesh = Mesh(tmp_path, envoy_factory, extra_args=["--kubeconfig", str(kube.kubeconfig)])
    mesh.host = bridge
    mesh.start_with_ca()
    try:
        ns = kube.namespace("side")
        pod = sidecar_pod(ns, "server", {"app": "server"}, f"{bridge}:{mesh.xds_port}", f"{bridge}:{mesh.secure_port}")
        pod["spec"]["nodeName"] = node.name
        kube.apply(pod, service(ns, "server", 80, 8080, {"app": "server"}),
                   deployment(ns, "client", APP, {"app": "client"}, 8080, node.name))  # fmt: skip
        server = nwait(node, lambda: ready_pods(kube, ns, "app=server", 1), 90, "sidecar pod Ready")[0]
        statuses = {s["name"]: s for s in server["status"]["containerStatuses"]}
        assert statuses["istio-proxy"]["ready"] and "running" in statuses["istio-proxy"]["state"]
        (init,) = server["status"]["initContainerStatuses"]
        assert init["state"]["terminated"]["exitCode"] == 0
        client = nwait(node, lambda: ready_pods(kube, ns, "app=client", 1), 60, "client Ready")[0]
        ip = server["status"]["podIP"]
        capture = node.netns(server)
        rules = subprocess.run(["ip", "netns", "exec", capture, "iptables-save", "-t", "nat"],
                               capture_output=True, text=True, check=True).stdout  # fmt: skip
        # Capture first, the node's service DNAT after it (the proxy's own traffic only).
        assert rules.index("-A OUTPUT -j ISTIO_OUTPUT") < rules.index("-A OUTPUT -j KUBE-SERVICES"), rules
        vip = kube.get(f"/api/v1/namespaces/{ns}/services/server")["spec"]["clusterIP"]

        def inbound_cx() -> int:
            with urllib.request.urlopen(
                f"http://{ip}:15000/stats?filter=^listener.0.0.0.0_15006.downstream_cx_total$"
            ) as r:
                text = r.read().decode()
            return int(text.split(":")[1]) if ":" in text else 0

        def through_sidecar() -> dict[str, Any]:
            r = http_get(node.netns(client), vip, 80, "/in")
            body: dict[str, Any] = json.loads(r["body"]) if r["status"] == 200 else {}
            # Envoy's inbound HTTP chain adds x-request-id; the plain client sends none.
            return body if "x-request-id" in body.get("headers", {}) else {}

        before = inbound_cx()
        body = nwait(node, through_sidecar, 30, "client -> ClusterIP -> server's captured inbound")
        assert body["name"] == "server"
        assert inbound_cx() > before
        # The app's own outbound call is captured to 15001 (it runs as root, not 1337).
        r = http_get(capture, vip, 80, "/out")
        assert r["status"] == 200 and "x-envoy-upstream-service-time" in {k.lower() for k in r["headers"]}, r
    finally:
        mesh.stop()
