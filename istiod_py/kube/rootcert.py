"""The mesh root certificate published as ConfigMap `istio-ca-root-cert`
(`root-cert.pem`) in every namespace, as istiod's namespace controller does, so
workloads can trust the control plane and each other. A new namespace gets it
within moments; an edited or deleted copy is repaired. Leader only: replicas
would otherwise fight over the same objects."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from .client import KubeApiError, KubeClient
from .informer import Batch, Informer, Resource

log = logging.getLogger("istiod_py.kube.rootcert")

CONFIGMAP = "istio-ca-root-cert"
KEY = "root-cert.pem"
# Namespaces istiod leaves alone (Kubernetes' own).
IGNORED = frozenset({"kube-system", "kube-public", "kube-node-lease", "local-path-storage"})

NAMESPACES = Resource("Namespace", "", ("v1",), "namespaces", namespaced=False)
CONFIGMAPS = Resource("ConfigMap", "", ("v1",), "configmaps")


class RootCertPublisher:
    def __init__(self, client: KubeClient, root_pem: Callable[[], str], is_leader: Callable[[], bool]) -> None:
        self.client = client
        self.root_pem = root_pem
        self.is_leader = is_leader
        self.writes = 0
        self._pending: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.namespaces: Informer[str] = Informer(
            client, NAMESPACES, lambda o: str((o.get("status") or {}).get("phase") or "Active"), self._on_batch
        )
        self.configmaps: Informer[dict[str, str]] = Informer(
            client,
            CONFIGMAPS,
            lambda o: {str(k): str(v) for k, v in (o.get("data") or {}).items()},
            self._on_batch,
            field_selector=f"metadata.name={CONFIGMAP}",
        )

    def start(self) -> None:
        self.namespaces.start()
        self.configmaps.start()
        self._task = asyncio.get_running_loop().create_task(self._reconcile_loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await asyncio.gather(self.namespaces.stop(), self.configmaps.stop(), return_exceptions=True)

    def resync(self) -> None:
        """Check every namespace (on becoming leader, or when the root changes)."""
        self._pending |= {ns for (_, ns) in self.namespaces.store}
        self._wake.set()

    def _on_batch(self, inf: Informer[Any], batch: Batch[Any]) -> None:
        if batch.replace:
            self.resync()
            return
        for ns, name in batch.changes:
            self._pending.add(name if inf is self.namespaces else ns)
        self._wake.set()

    async def _reconcile_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self.is_leader() or not (self.namespaces.synced.is_set() and self.configmaps.synced.is_set()):
                continue
            pending, self._pending = self._pending, set()
            for ns in sorted(pending):
                try:
                    await asyncio.to_thread(self._ensure, ns)
                except KubeApiError as e:
                    log.warning("%s in %s: %s; will retry", CONFIGMAP, ns, e)
                    self._pending.add(ns)
            if self._pending:
                await asyncio.sleep(1.0)
                self._wake.set()

    def _ensure(self, ns: str) -> None:
        phase = self.namespaces.store.get(("", ns))
        if ns in IGNORED or phase is None or phase == "Terminating":
            return
        pem = self.root_pem()
        current = self.configmaps.store.get((ns, CONFIGMAP))
        if current is not None and current.get(KEY) == pem:
            return
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": CONFIGMAP, "namespace": ns, "labels": {"istio.io/config": "true"}},
            "data": {KEY: pem},
        }
        path = f"/api/v1/namespaces/{ns}/configmaps"
        try:
            self.client.create(path, body)
        except KubeApiError as e:
            if e.status == 404:
                return  # the namespace is gone
            if e.status != 409:
                raise
            live = self.client.get(f"{path}/{CONFIGMAP}")
            body["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
            self.client.replace(f"{path}/{CONFIGMAP}", body)
        self.writes += 1
