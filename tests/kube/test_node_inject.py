"""Istio's journey on the one-host node, up to injection: `istiod-py install`
unchanged (its istiod pod runs on the node, in the node's own namespace on the
bridge address), a namespace labelled istio-injection=enabled, a plain
Deployment; the real API server calls /inject through the istiod Service, the
node runs the injected istio-init (`istiod-py iptables`) and istio-proxy
(`istiod-py agent`, xDS and CA over TLS at istiod.istio-system.svc through the
node's service rules, token from the TokenRequest API), and a pod without a
sidecar reaching the Service's ClusterIP is captured into the sidecar's inbound
listener."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from typing import Any

from istiod_py.kube.client import KubeApiError
from tests.kube.test_node import (  # noqa: F401 - `node` is a fixture
    APP,
    NodeProc,
    deployment,
    http_get,
    node,
    nwait,
    ready_pods,
    service,
)
from tests.support.kube import KubeCluster


def _cli(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "istiod_py.cli", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"istiod-py {' '.join(args)}: {proc.stderr[-2000:]}"


def _injected_pod_is_captured(kube: KubeCluster, node: NodeProc, ns: str) -> None:  # noqa: F811
    kube.apply({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": {"istio-injection": "enabled"}}})  # fmt: skip
    nwait(node, lambda: kube._exists(f"/api/v1/namespaces/{ns}/serviceaccounts/default"), 30, "default SA")
    client_dep = deployment(ns, "client", APP, {"app": "client"}, 8080, node.name)
    client_dep["spec"]["template"]["metadata"]["annotations"] = {"sidecar.istio.io/inject": "false"}

    def injected() -> bool:
        # The webhook's caBundle (set by serve) reaches the API server's admission chain
        # asynchronously: recreate until the Pod comes back injected.
        items = kube.client.get(f"/api/v1/namespaces/{ns}/pods", [("labelSelector", "app=server")])["items"]
        if any(c["name"] == "istio-proxy" for p in items for c in p["spec"]["containers"]):
            return True
        for p in items:
            with contextlib.suppress(KubeApiError):
                kube.client.delete(f"/api/v1/namespaces/{ns}/pods/{p['metadata']['name']}")
        return False

    kube.apply(
        deployment(ns, "server", APP, {"app": "server", "version": "v1"}, 8080, node.name),
        service(ns, "server", 80, 8080, {"app": "server"}),
        client_dep,
    )
    nwait(node, injected, 60, "an injected server Pod")
    server = nwait(node, lambda: ready_pods(kube, ns, "app=server", 1), 120, "injected server Pod Ready 2/2")[0]
    statuses = {s["name"]: s for s in server["status"]["containerStatuses"]}
    assert set(statuses) == {"server", "istio-proxy"} and all(s["ready"] for s in statuses.values()), statuses
    (init,) = server["status"]["initContainerStatuses"]
    assert init["name"] == "istio-init" and init["state"]["terminated"]["exitCode"] == 0
    client = nwait(node, lambda: ready_pods(kube, ns, "app=client", 1), 60, "client Ready")[0]
    assert [c["name"] for c in client["spec"]["containers"]] == ["client"]

    vip = kube.get(f"/api/v1/namespaces/{ns}/services/server")["spec"]["clusterIP"]

    def through_sidecar() -> dict[str, Any]:
        r = http_get(node.netns(client), vip, 80, "/in")
        body: dict[str, Any] = json.loads(r["body"]) if r["status"] == 200 else {}
        # The server's Envoy (inbound, 15006) adds x-request-id; the plain client sends none.
        return body if "x-request-id" in body.get("headers", {}) else {}

    body = nwait(node, through_sidecar, 30, "client -> ClusterIP -> the sidecar's captured inbound")
    assert body["name"] == "server-v1"


def test_installed_istiod_runs_on_the_node_and_injects_pods(
    kube: KubeCluster,
    node: NodeProc,  # noqa: F811 - the fixture imported above
) -> None:
    """`install` unchanged: the istiod Deployment's pod runs on the node (in its own
    namespace, on the bridge address), the API server reaches its /inject through
    the Service, and injected pods get xDS and certificates from it."""
    kc = str(kube.kubeconfig)
    bridge = next(a["address"] for a in kube.get(f"/api/v1/nodes/{node.name}")["status"]["addresses"]
                  if a["type"] == "InternalIP")  # fmt: skip
    _cli("install", "--kubeconfig", kc, "--set", "profile=minimal")
    ns = "node-inj2"
    try:
        # The only schedulable Node in the session is this one (the others keep the not-ready taint).
        istiod = nwait(node, lambda: ready_pods(kube, "istio-system", "app=istiod", 1), 90, "istiod Ready")[0]
        assert istiod["status"]["podIP"] == bridge
        nwait(node, lambda: bridge in kube.slice_addresses("istio-system", "istiod"), 30, "istiod's endpoints")
        _injected_pod_is_captured(kube, node, ns)
    finally:
        with contextlib.suppress(KubeApiError):
            kube.client.delete(f"/api/v1/namespaces/{ns}")
        _cli("uninstall", "--kubeconfig", kc, "--set", "profile=minimal")
