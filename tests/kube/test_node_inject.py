"""An injected Pod on the one-host node: `istiod-py install`, a namespace labelled
istio-injection=enabled, a plain Deployment; the real API server calls serve's
/inject, the node runs the injected istio-init (`istiod-py iptables`) and
istio-proxy (`istiod-py agent`, xDS and CA over TLS at istiod.istio-system.svc
through the node's service rules, token from the TokenRequest API), and a pod
without a sidecar reaching the Service's ClusterIP is captured into the
sidecar's inbound listener.

The control plane runs on the node's bridge address (pods reach it there), so
the installed istiod Service gets an EndpointSlice naming that address and
serve's ports instead of a selector, and the istiod Deployment is scaled to 0."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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
from tests.support.envoy import EnvoyFactory, envoy_factory_context
from tests.support.kube import KubeCluster
from tests.support.mesh import Mesh
from tests.support.net import free_port


@pytest.fixture
def envoy_factory(tmp_path: Path) -> Iterator[EnvoyFactory]:
    with envoy_factory_context(tmp_path / "envoy") as factory:
        yield factory


def _cli(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "istiod_py.cli", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"istiod-py {' '.join(args)}: {proc.stderr[-2000:]}"


def _istiod_at(kube: KubeCluster, address: str, ports: dict[int, int]) -> None:
    """The istiod Service answered at `address` (service port -> serve's port)."""
    svc = kube.get("/api/v1/namespaces/istio-system/services/istiod")
    kube.client.patch("/api/v1/namespaces/istio-system/services/istiod", {"spec": {"selector": None}})
    kube.client.patch("/apis/apps/v1/namespaces/istio-system/deployments/istiod/scale", {"spec": {"replicas": 0}})
    slice_ports = [
        {"name": p["name"], "port": ports[p["port"]], "protocol": "TCP"}
        for p in svc["spec"]["ports"]
        if p["port"] in ports
    ]
    kube.apply({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "istiod-bridge", "namespace": "istio-system",
                     "labels": {"kubernetes.io/service-name": "istiod"}},
        "addressType": "IPv4", "ports": slice_ports,
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
    })  # fmt: skip


def test_injected_pod_runs_with_sidecar_and_is_captured(
    kube: KubeCluster,
    node: NodeProc,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    envoy_factory: EnvoyFactory,
) -> None:
    kc = str(kube.kubeconfig)
    bridge = next(a["address"] for a in kube.get(f"/api/v1/nodes/{node.name}")["status"]["addresses"]
                  if a["type"] == "InternalIP")  # fmt: skip
    _cli("install", "--kubeconfig", kc, "--set", "profile=minimal")
    webhook_port = free_port(bridge)
    mesh = Mesh(tmp_path / "mesh", envoy_factory, extra_args=["--kubeconfig", kc, "--webhook-port", str(webhook_port)])
    mesh.host = bridge
    ns = "node-inj"
    try:
        mwc_path = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/istio-sidecar-injector"
        mwc = kube.get(mwc_path)
        for hook in mwc["webhooks"]:
            hook["clientConfig"] = {"url": f"https://{bridge}:{webhook_port}/inject"}
        kube.client.replace(mwc_path, mwc)
        mesh.start_with_ca()
        _istiod_at(kube, bridge, {15010: mesh.xds_port, 15012: mesh.secure_port, 443: webhook_port})
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
    finally:
        mesh.stop()
        with contextlib.suppress(KubeApiError):
            kube.client.delete(f"/api/v1/namespaces/{ns}")
        _cli("uninstall", "--kubeconfig", kc, "--set", "profile=minimal")
