"""The Kubernetes source: informers for every kind the mesh reads, merged into
one SourceSnapshot of the same objects the file source produces (Services,
EndpointSlices, Istio configs, plus Pods for the endpoint join), and the mesh
config from the `istio` ConfigMap in the system namespace.

All bookkeeping runs on the event loop; informers (threads) only fetch and
convert. Events arriving together are merged into one snapshot."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from istiod_py.config.kube_types import EndpointSlice, KubeService
from istiod_py.config.model import Config, ConfigError
from istiod_py.model import MeshConfig
from istiod_py.model.mesh import MeshConfigError
from istiod_py.registry.aggregate import SourceSnapshot
from istiod_py.registry.pods import PodInfo

from . import convert
from .client import KubeClient
from .informer import Batch, Informer, Key, Resource
from .selectors import namespace_selected, parse_selectors

log = logging.getLogger("istiod_py.kube")

MESH_CONFIGMAP = "istio"
MESH_KEY = "mesh"

NAMESPACES = Resource("Namespace", "", ("v1",), "namespaces", namespaced=False)
SERVICES = Resource("Service", "", ("v1",), "services")
ENDPOINT_SLICES = Resource("EndpointSlice", "discovery.k8s.io", ("v1",), "endpointslices")
PODS = Resource("Pod", "", ("v1",), "pods")
NODES = Resource("Node", "", ("v1",), "nodes", namespaced=False)
CONFIGMAPS = Resource("ConfigMap", "", ("v1",), "configmaps")


def _newest_first(versions: tuple[str, ...]) -> tuple[str, ...]:
    order = {"v1": 0, "v1beta1": 1, "v1alpha3": 2}
    return tuple(sorted(versions, key=lambda v: order.get(v, 9)))


class KubeSource:
    name = "kubernetes"

    def __init__(
        self,
        client: KubeClient,
        on_change: Callable[[SourceSnapshot], None],
        *,
        root_namespace: str = "istio-system",
        on_mesh: Callable[[MeshConfig | None], None] | None = None,
        watch_timeout: int = 300,
    ) -> None:
        self.client = client
        self.on_change = on_change
        self.on_mesh = on_mesh
        self.root_namespace = root_namespace
        self.snapshot = SourceSnapshot()
        self.mesh: MeshConfig | None = None
        self.mesh_error = ""
        self.discovery_selectors: list[Any] = []
        self.events = 0
        self.snapshots = 0
        self._scheduled = False
        self._dirty: set[str] = set()
        self._parts: dict[str, tuple[Any, ...]] = {}
        self._last_good: dict[Key, tuple[str, Config]] = {}
        self._pod_final: dict[Key, tuple[PodInfo, str, PodInfo]] = {}
        w = watch_timeout
        self.namespaces: Informer[Mapping[str, str]] = Informer(
            client, NAMESPACES, convert.namespace_labels, self._on_batch, watch_timeout=w
        )
        self.services: Informer[KubeService] = Informer(
            client, SERVICES, convert.service, self._on_batch, watch_timeout=w
        )
        self.slices: Informer[EndpointSlice] = Informer(
            client, ENDPOINT_SLICES, convert.endpoint_slice, self._on_batch, watch_timeout=w
        )
        self.pods: Informer[PodInfo] = Informer(client, PODS, convert.pod, self._on_batch, watch_timeout=w)
        self.nodes: Informer[str] = Informer(client, NODES, convert.node_locality, self._on_batch, watch_timeout=w)
        self.configmaps: Informer[dict[str, str]] = Informer(
            client,
            CONFIGMAPS,
            lambda o: {str(k): str(v) for k, v in (o.get("data") or {}).items()},
            self._on_batch,
            namespace=root_namespace,
            field_selector=f"metadata.name={MESH_CONFIGMAP}",
            watch_timeout=w,
        )
        self.istio: list[Informer[convert.IstioObject]] = []
        for info in convert.istio_kinds():
            res = Resource(info.kind, info.group, _newest_first(info.versions), convert.plural(info.kind))
            inf: Informer[convert.IstioObject] = Informer(client, res, lambda o: None, self._on_batch, watch_timeout=w)
            inf.convert = convert.istio_converter(info, lambda inf=inf: inf.version)
            self.istio.append(inf)
        # Gateway API kinds through the same loader (an unserved kind is an empty store
        # until its CRD appears: the informer polls for it).
        for info in convert.gateway_api_kinds():
            res = Resource(
                info.kind,
                info.group,
                _newest_first(info.versions),
                convert.plural(info.kind),
                namespaced=info.kind != "GatewayClass",
            )
            inf = Informer(client, res, lambda o: None, self._on_batch, watch_timeout=w)
            inf.convert = convert.istio_converter(info, lambda inf=inf: inf.version)
            self.istio.append(inf)
        self.informers: list[Informer[Any]] = [
            self.configmaps,
            self.namespaces,
            self.nodes,
            self.services,
            self.slices,
            self.pods,
            *self.istio,
        ]

    # ------------------------------------------------------------ lifecycle

    async def start(self, sync_timeout: float = 60.0) -> SourceSnapshot:
        """Starts every informer and waits until each has listed once, so the
        first snapshot is the whole cluster (never a partial mesh)."""
        t0 = time.monotonic()
        for inf in self.informers:
            inf.start()
        pending = [inf for inf in self.informers]
        try:
            await asyncio.wait_for(asyncio.gather(*(inf.synced.wait() for inf in pending)), sync_timeout)
        except TimeoutError:
            missing = ", ".join(inf.name for inf in self.informers if not inf.synced.is_set())
            await self.stop()
            raise RuntimeError(
                f"Kubernetes ({self.client.description}, {self.client.host}): could not list {missing} "
                f"within {sync_timeout:.0f}s; check that the API server is reachable and that the "
                "credentials may list and watch them (see the log above)"
            ) from None
        self._flush()
        log.info(
            "kubernetes: synced in %.2fs: %d services, %d endpoint slices, %d pods, %d Istio configs",
            time.monotonic() - t0,
            len(self.snapshot.services),
            len(self.snapshot.endpoint_slices),
            len(self.snapshot.pods),
            len(self.snapshot.configs),
        )
        return self.snapshot

    async def stop(self) -> None:
        await asyncio.gather(*(inf.stop() for inf in self.informers), return_exceptions=True)

    # ------------------------------------------------------------ events

    def _on_batch(self, inf: Informer[Any], batch: Batch[Any]) -> None:
        self.events += 1
        self._dirty.add(inf.resource.kind)
        if inf is self.configmaps:
            self._mesh_changed()
        if not self._scheduled and all(i.synced.is_set() for i in self.informers):
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_and_notify)

    def _flush_and_notify(self) -> None:
        self._scheduled = False
        if self._flush():
            self.on_change(self.snapshot)

    def _flush(self) -> bool:
        """Rebuilds the parts of the snapshot whose kinds changed. True if any did."""
        dirty, self._dirty = self._dirty, set()
        if not dirty:
            return False
        if dirty & {"Namespace"} and self.discovery_selectors:
            dirty |= {"Service", "EndpointSlice", "Pod"}
        if "Node" in dirty:
            dirty.add("Pod")
        if dirty & {"Namespace", "Service"}:
            self._parts["services"] = tuple(s for s in self.services.store.values() if self._selected(s.namespace))
        if dirty & {"Namespace", "EndpointSlice"}:
            self._parts["slices"] = tuple(s for s in self.slices.store.values() if self._selected(s.namespace))
        if dirty & {"Namespace", "Pod", "Node"}:
            self._parts["pods"] = self._pods()
        if any(inf.resource.kind in dirty for inf in self.istio):
            configs, errors = self._istio_configs()
            self._parts["configs"] = configs
            self._parts["errors"] = errors
        self.snapshot = SourceSnapshot(
            configs=self._parts.get("configs", ()),
            services=self._parts.get("services", ()),
            endpoint_slices=self._parts.get("slices", ()),
            errors=self._parts.get("errors", ()),
            pods=self._parts.get("pods", ()),
        )
        self.snapshots += 1
        return True

    def _selected(self, namespace: str) -> bool:
        if not self.discovery_selectors:
            return True
        labels = self.namespaces.store.get(("", namespace))
        return labels is not None and namespace_selected(self.discovery_selectors, labels)

    def _pods(self) -> tuple[PodInfo, ...]:
        """Pods with their Node's locality (unless the Pod sets its own). The final
        object is reused while neither the Pod nor the locality changed."""
        out: list[PodInfo] = []
        final: dict[Key, tuple[PodInfo, str, PodInfo]] = {}
        for key, base in self.pods.store.items():
            if not self._selected(base.namespace):
                continue
            loc = base.locality or self.nodes.store.get(("", base.node_name), "")
            hit = self._pod_final.get(key)
            if hit is not None and hit[0] is base and hit[1] == loc:
                pod = hit[2]
            else:
                pod = base if loc == base.locality else dataclasses.replace(base, locality=loc)
            final[key] = (base, loc, pod)
            out.append(pod)
        self._pod_final = final
        return tuple(out)

    def _istio_configs(self) -> tuple[tuple[Config, ...], tuple[ConfigError, ...]]:
        """Valid configs; an object whose update is invalid keeps serving its last
        good version (as a file edit that breaks a resource does)."""
        configs: list[Config] = []
        errors: list[ConfigError] = []
        last_good: dict[Key, tuple[str, Config]] = {}
        for inf in self.istio:
            kind = f"{inf.resource.group}/{inf.resource.kind}"  # Istio's Gateway is not Gateway API's
            for (ns, name), obj in inf.store.items():
                key = (f"{kind}/{ns}", name)
                errors += obj.errors
                cfg = obj.config
                if cfg is None:
                    prev = self._last_good.get(key)
                    if prev is None:
                        continue
                    cfg = prev[1]
                last_good[key] = (kind, cfg)
                configs.append(cfg)
        self._last_good = last_good
        for e in errors:
            log.error("config rejected: %s", e)
        return tuple(configs), tuple(errors)

    # ------------------------------------------------------------ mesh config

    def _mesh_changed(self) -> None:
        data = self.configmaps.store.get((self.root_namespace, MESH_CONFIGMAP))
        where = f"ConfigMap {self.root_namespace}/{MESH_CONFIGMAP}"
        mesh: MeshConfig | None = None
        selectors: list[Any] = []
        self.mesh_error = ""
        if data is not None:
            try:
                raw = yaml.safe_load(data.get(MESH_KEY) or "") or {}
                if not isinstance(raw, dict):
                    raise MeshConfigError(f"{where}: data.{MESH_KEY} must be a YAML mapping")
                selectors = parse_selectors(raw.get("discoverySelectors"), f"{where}: data.{MESH_KEY}")
                known = {k: v for k, v in raw.items() if k in MESH_FIELDS}
                ignored = sorted(set(raw) - set(known) - {"discoverySelectors"})
                if ignored:
                    log.info("%s: mesh fields not used by istiod-py: %s", where, ", ".join(ignored))
                mesh = MeshConfig.from_dict(known, f"{where}: data.{MESH_KEY}")
            except (yaml.YAMLError, MeshConfigError, ValueError) as e:
                self.mesh_error = str(e)
                log.error("%s; keeping the previous mesh config", e)
                return
        if selectors != self.discovery_selectors:
            self.discovery_selectors = selectors
            self._dirty |= {"Namespace", "Service", "EndpointSlice", "Pod"}
        if mesh != self.mesh:
            self.mesh = mesh
            if self.on_mesh is not None:
                self.on_mesh(mesh)


# Mesh config fields MeshConfig.from_dict understands; an Istio ConfigMap carries
# many more (defaultConfig details, tracing, ...), which are not errors here.
MESH_FIELDS = frozenset(
    {
        "rootNamespace",
        "trustDomain",
        "outboundTrafficPolicy",
        "enableAutoMtls",
        "connectTimeout",
        "extensionProviders",
        "defaultConfig",
        "accessLogFile",
    }
)
