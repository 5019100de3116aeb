"""A real Kubernetes control plane for tests: etcd, kube-apiserver,
kube-controller-manager and kube-scheduler started on loopback by the product's own
LocalCluster (istiod_py/demo/cluster.py, which the capture demo uses too), plus the
helpers tests need.

    cluster = KubeCluster(run_dir).start()
    cluster.apply(yaml_text)             # create or replace, like kubectl apply
    cluster.restart_apiserver()          # same port, same etcd
    cluster.stop()
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import yaml

from istiod_py.demo.cluster import ROOT, LocalCluster, build
from istiod_py.kube import apply as kapply
from istiod_py.kube.client import JsonObj, KubeApiError
from istiod_py.kube.crds import gateway_api_crds

__all__ = ["ROOT", "KubeCluster", "build", "dump", "wait"]
CRD_DIR = ROOT / "deploy" / "crds"


class KubeCluster(LocalCluster):
    def start(self, timeout: float = 3600.0, apiserver_args: str = "", scheduler: bool = True) -> KubeCluster:
        super().start(timeout, apiserver_args, scheduler)
        return self

    # ------------------------------------------------------------ objects

    def apply(self, *sources: str | Mapping[str, Any]) -> list[JsonObj]:
        out = []
        for src in sources:
            docs = kapply.documents(src) if isinstance(src, str) else [dict(src)]
            out += [kapply.apply(self.client, d) for d in docs]
        return out

    def delete(self, *sources: str | Mapping[str, Any]) -> None:
        for src in sources:
            for d in kapply.documents(src) if isinstance(src, str) else [dict(src)]:
                kapply.delete(self.client, d)

    def get(self, path: str) -> JsonObj:
        return self.client.get(path)

    def install_crds(self) -> list[str]:
        docs = [d for f in sorted(CRD_DIR.glob("*.yaml")) for d in kapply.documents(f.read_text())]
        docs += gateway_api_crds()  # Gateway API from the same protos (a test cluster has none)
        kapply.apply_all(self.client, docs)
        names = [d["metadata"]["name"] for d in docs]
        kapply.wait_crds_established(self.client, names)
        return names

    def namespace(self, prefix: str = "t") -> str:
        """A fresh namespace (and its default ServiceAccount, made by the controller-manager)."""
        name = f"{prefix}-{secrets.token_hex(3)}"
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        wait(lambda: self._exists(f"/api/v1/namespaces/{name}/serviceaccounts/default"), 30, "default ServiceAccount")
        return name

    def _exists(self, path: str) -> bool:
        try:
            self.client.get(path)
            return True
        except KubeApiError as e:
            if e.status == 404:
                return False
            raise

    def node(self, name: str, labels: Mapping[str, str]) -> None:
        """A Node object (no kubelet): the EndpointSlice controller needs one for a Pod's nodeName."""
        self.apply({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": dict(labels)}})

    def pod(
        self,
        namespace: str,
        name: str,
        ip: str,
        labels: Mapping[str, str],
        *,
        node: str,
        service_account: str = "default",
        ready: bool = True,
        port: int = 8080,
    ) -> None:
        """A Pod bound to `node` with a hand-set status (no kubelet runs it): the
        controller-manager then lists it in its Services' EndpointSlices. `ip` is
        data only; nothing connects to it."""
        if service_account != "default":
            self.apply(
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {"name": service_account, "namespace": namespace},
                }
            )
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
                "spec": {
                    "nodeName": node,
                    "serviceAccountName": service_account,
                    "automountServiceAccountToken": False,
                    "containers": [{"name": "app", "image": "app:1", "ports": [{"containerPort": port}]}],
                },
            }
        )
        self.set_pod_status(namespace, name, ip, ready)

    def set_pod_status(self, namespace: str, name: str, ip: str, ready: bool) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        status = "True" if ready else "False"
        self.client.patch(
            f"/api/v1/namespaces/{namespace}/pods/{name}/status",
            {
                "status": {
                    "phase": "Running",
                    "podIP": ip,
                    "podIPs": [{"ip": ip}],
                    "hostIP": "10.255.0.1",
                    "conditions": [
                        {"type": "Ready", "status": status, "lastTransitionTime": now},
                        {"type": "ContainersReady", "status": status, "lastTransitionTime": now},
                        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                    ],
                }
            },
        )

    def slice_addresses(self, namespace: str, service: str) -> set[str]:
        out = self.client.get(
            f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
            [("labelSelector", f"kubernetes.io/service-name={service}")],
        )
        return {a for s in out.get("items") or [] for e in s.get("endpoints") or [] for a in e.get("addresses") or []}


def wait(cond: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = cond()
            if last:
                return last
        except (AssertionError, KubeApiError, OSError, KeyError, ValueError) as e:
            last = e
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def dump(objs: Iterable[Mapping[str, Any]]) -> str:
    return yaml.safe_dump_all([json.loads(json.dumps(o)) for o in objs])
