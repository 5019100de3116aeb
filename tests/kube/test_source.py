"""The Kubernetes source against a real API server and controller-manager:
Services (ClusterIP, headless, ExternalName), EndpointSlices made by the real
EndpointSlice controller joined with Pods (labels, service account, tlsMode,
readiness, Node locality), endpoint-only changes classified as EDS-only, the
mesh ConfigMap, discoverySelectors, 410 Gone and watch restarts.

Pod IPs are 10.x data only (the API server refuses loopback endpoints); nothing
connects to them."""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from istiod_py.kube.client import KubeApiError, KubeClient
from istiod_py.kube.informer import Informer, Resource
from istiod_py.kube.source import CONFIGMAPS, PODS, KubeSource
from istiod_py.model import MeshConfig, MeshState, Resolution
from istiod_py.registry.aggregate import Aggregator, diff
from tests.support.kube import KubeCluster, wait

DOMAIN = "svc.cluster.local"


async def until(cond: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while loop.time() < deadline:
        last = cond()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Watched:
    """A KubeSource feeding an Aggregator, as `serve` wires it."""

    def __init__(self, kube: KubeCluster) -> None:
        self.agg = Aggregator()
        self.meshes: list[MeshConfig | None] = []
        self.source = KubeSource(kube.client, self._changed, on_mesh=self.meshes.append)
        self.state: MeshState = self.agg.build()

    def _changed(self, snap: Any) -> None:
        self.agg.set_source("kubernetes", snap)

    async def start(self) -> Watched:
        self.agg.set_source("kubernetes", await self.source.start())
        self.state = self.agg.build()
        return self

    def build(self) -> MeshState:
        self.state = self.agg.build()
        return self.state


@pytest.fixture
async def watched(kube: KubeCluster) -> AsyncIterator[Watched]:
    w = await Watched(kube).start()
    yield w
    await w.source.stop()


def eps(state: MeshState, host: str) -> dict[str, Any]:
    return {e.address: e for e in state.endpoints.get(host, ())}


async def test_services_clusterip_headless_externalname(kube: KubeCluster, watched: Watched) -> None:
    ns = kube.namespace("svc")
    kube.apply(f"""
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {ns}}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: db, namespace: {ns}}}
spec:
  clusterIP: None
  selector: {{app: db}}
  ports: [{{name: tcp-db, port: 5432}}]
---
apiVersion: v1
kind: Service
metadata: {{name: ext, namespace: {ns}}}
spec:
  type: ExternalName
  externalName: example.com
  ports: [{{name: https, port: 443}}]
""")
    web, db, ext = (f"{n}.{ns}.{DOMAIN}" for n in ("web", "db", "ext"))
    state = await until(lambda: (s := watched.build()).services.get(ext) and s, what="three services")
    assert state.services[web].addresses and state.services[web].addresses[0].startswith("10.96.")
    assert state.services[web].resolution is Resolution.STATIC
    assert state.services[db].addresses == ()
    assert state.services[ext].resolution is Resolution.DNS and state.services[ext].mesh_external
    assert [e.address for e in state.endpoints[ext]] == ["example.com"]
    kube.delete(f"apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {ns}}}\n")
    await until(lambda: web not in watched.build().services, what="the deleted Service gone")


async def test_endpoints_join_pods_nodes_and_stay_eds_only(kube: KubeCluster, watched: Watched) -> None:
    ns = kube.namespace("eps")
    node = f"node-{secrets.token_hex(3)}"
    kube.node(
        node,
        {
            "topology.kubernetes.io/region": "r1",
            "topology.kubernetes.io/zone": "z1",
            "topology.istio.io/subzone": "s1",
        },
    )
    kube.apply(f"""
apiVersion: v1
kind: Service
metadata: {{name: reviews, namespace: {ns}}}
spec:
  selector: {{app: reviews}}
  ports: [{{name: http, port: 9080, targetPort: 9080}}]
""")
    kube.pod(
        ns,
        "reviews-v1",
        "10.244.1.1",
        {"app": "reviews", "version": "v1"},
        node=node,
        service_account="bookinfo-reviews",
    )
    kube.pod(
        ns,
        "reviews-v2",
        "10.244.1.2",
        {"app": "reviews", "version": "v2", "security.istio.io/tlsMode": "istio"},
        node=node,
        service_account="bookinfo-reviews",
    )
    host = f"reviews.{ns}.{DOMAIN}"
    state = await until(lambda: len(eps(s := watched.build(), host)) == 2 and s, what="two endpoints from the KCM")
    v1, v2 = eps(state, host)["10.244.1.1"], eps(state, host)["10.244.1.2"]
    assert v1.labels["version"] == "v1" and v2.labels["version"] == "v2"
    assert v1.service_account == v2.service_account == "bookinfo-reviews"
    assert v1.namespace == ns and v1.port == 9080
    assert v1.locality == v2.locality == "r1/z1/s1"
    assert v1.tls_mode == "" and v2.tls_mode == "istio"
    assert v1.healthy and v2.healthy

    # Relabelling a Pod changes its endpoint only: an EDS-only push of that host.
    before = state
    kube.client.patch(f"/api/v1/namespaces/{ns}/pods/reviews-v1", {"metadata": {"labels": {"version": "v3"}}})
    after = await until(
        lambda: eps(s := watched.build(), host)["10.244.1.1"].labels.get("version") == "v3" and s,
        what="the relabelled Pod",
    )
    change = diff(before, after)
    assert not change.full and change.eds_hosts == frozenset({host}), change

    # A Pod that turns unready is an unhealthy endpoint (the controller's slice says so).
    before = after
    kube.set_pod_status(ns, "reviews-v2", "10.244.1.2", ready=False)
    after = await until(
        lambda: not eps(s := watched.build(), host)["10.244.1.2"].healthy and s, what="the unready endpoint"
    )
    change = diff(before, after)
    assert not change.full and change.eds_hosts == frozenset({host}), change

    # A deleted Pod leaves the slice and the endpoints (grace 0: no kubelet confirms a deletion).
    kube.client.request("DELETE", f"/api/v1/namespaces/{ns}/pods/reviews-v1", [("gracePeriodSeconds", "0")])
    await until(lambda: set(eps(watched.build(), host)) == {"10.244.1.2"}, what="the deleted Pod's endpoint gone")

    # A Node's new zone reaches its Pods' endpoints.
    kube.client.patch(f"/api/v1/nodes/{node}", {"metadata": {"labels": {"topology.kubernetes.io/zone": "z2"}}})
    await until(lambda: eps(watched.build(), host)["10.244.1.2"].locality == "r1/z2/s1", what="the new locality")


async def test_mesh_configmap_and_discovery_selectors(kube: KubeCluster, watched: Watched) -> None:
    seen = kube.namespace("seen")
    hidden = kube.namespace("hidden")
    kube.client.patch(f"/api/v1/namespaces/{seen}", {"metadata": {"labels": {"mesh": "yes"}}})
    for ns in (seen, hidden):
        kube.apply(f"""
apiVersion: v1
kind: Service
metadata: {{name: app, namespace: {ns}}}
spec:
  ports: [{{name: http, port: 80}}]
""")
    await until(lambda: f"app.{hidden}.{DOMAIN}" in watched.build().services, what="both services")
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}})
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "istio", "namespace": "istio-system"},
        "data": {
            "mesh": "outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n"
            "discoverySelectors:\n- matchLabels: {mesh: 'yes'}\n"
            "defaultConfig: {discoveryAddress: istiod.istio-system.svc:15012}\n"
            "enablePrometheusMerge: true\n"
        },
    }
    try:
        kube.apply(cm)
        mesh = await until(lambda: watched.meshes and watched.meshes[-1], what="the mesh config")
        assert mesh.outbound_traffic_policy == "REGISTRY_ONLY"
        await until(lambda: f"app.{hidden}.{DOMAIN}" not in watched.build().services, what="the hidden namespace gone")
        assert f"app.{seen}.{DOMAIN}" in watched.build().services
        cm["data"] = {"mesh": "outboundTrafficPolicy: {mode: ALLOW_ANY}\n"}
        kube.apply(cm)
        await until(
            lambda: watched.meshes[-1] is not None and watched.meshes[-1].outbound_traffic_policy == "ALLOW_ANY",
            what="the edited mesh config",
        )
        await until(lambda: f"app.{hidden}.{DOMAIN}" in watched.build().services, what="selectors lifted")
    finally:
        kube.delete(cm)
    await until(lambda: watched.meshes[-1] is None, what="the deleted ConfigMap")


async def test_410_gone_relists_and_loses_nothing(kube: KubeCluster) -> None:
    """A watch from a resourceVersion the API server no longer has (410 Gone)
    lists again; the store ends up exactly the server's objects."""
    ns = kube.namespace("gone")
    kube.apply(_configmap(ns, "a"))
    # The session's API server compacts every 10 s, and serves ConfigMap watches
    # from etcd: wait until version 1 is gone.
    await until(lambda: _watch_status(kube, "1") == 410, 60, "resourceVersion 1 compacted away")
    batches: list[Any] = []
    inf: Informer[Any] = Informer(
        kube.client, CONFIGMAPS, lambda o: o["metadata"]["name"], lambda i, b: batches.append(b), namespace=ns
    )
    real_list = inf._list
    calls = []

    def list_then_pretend_ancient() -> str:
        real = real_list()
        calls.append(real)
        return "1" if len(calls) == 1 else real  # the first watch starts from resourceVersion 1

    inf._list = list_then_pretend_ancient  # type: ignore[method-assign]
    inf.start()
    try:
        await until(lambda: len(calls) >= 2, what="a re-list after 410 Gone")
        assert inf.relists == 2
        kube.apply(_configmap(ns, "b"))
        await until(lambda: (ns, "b") in inf.store, what="an event after the re-list")
        assert set(inf.store) == {(ns, "a"), (ns, "b"), (ns, "kube-root-ca.crt")}
    finally:
        await inf.stop()


def _configmap(ns: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": {"k": name}}


def _watch_status(kube: KubeCluster, rv: str) -> int:
    try:
        for ev in kube.client.stream(
            "/api/v1/configmaps", [("watch", "true"), ("resourceVersion", rv), ("timeoutSeconds", "1")], 5.0
        ):
            if ev.get("type") == "ERROR":
                return int(ev["object"].get("code") or 0)
    except KubeApiError as e:
        return e.status
    return 200


async def test_watch_restarts_resume_from_the_last_version(kube: KubeCluster) -> None:
    """Watches the server ends (timeoutSeconds) resume from the last version
    seen: no re-list, and every change made across the restarts arrives once."""
    ns = kube.namespace("resume")
    seen: list[tuple[str, str | None]] = []

    def record(i: Informer[Any], b: Any) -> None:
        if not b.replace:
            seen.extend((k[1], v) for k, v in b.changes.items() if k[0] == ns)

    inf: Informer[Any] = Informer(
        kube.client, PODS, lambda o: o["metadata"].get("labels", {}).get("n"), record, watch_timeout=1
    )
    inf.start()
    try:
        await until(inf.synced.is_set, what="the first list")
        for i in range(6):
            kube.pod(ns, f"p{i}", f"10.244.3.{i + 1}", {"n": str(i)}, node="none-needed")
            await asyncio.sleep(0.4)  # spread over several 1 s watches
        await until(lambda: len(inf.store) >= 6 and all((ns, f"p{i}") in inf.store for i in range(6)), what="6 pods")
        assert inf.relists == 1, "a watch restart must resume, not re-list"
        assert inf.watch_restarts >= 3
        # Each Pod was created, then its status set: exactly two events each,
        # none lost and none replayed twice across the watch restarts.
        for i in range(6):
            assert seen.count((f"p{i}", str(i))) == 2, (i, seen)
        assert len(seen) == 12, seen
    finally:
        await inf.stop()


async def test_unreachable_api_server_fails_start_naming_it(tmp_path: Path) -> None:
    """No silent empty mesh: a source that cannot list everything refuses to start."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    kc = tmp_path / "kubeconfig"
    kc.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{port}', insecure-skip-tls-verify: true}}}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    src = KubeSource(KubeClient.from_kubeconfig(str(kc)), lambda snap: None)
    with pytest.raises(RuntimeError) as err:
        await src.start(sync_timeout=2)
    assert f"https://127.0.0.1:{port}" in str(err.value) and "Service" in str(err.value)


async def test_a_kind_not_served_is_empty_and_quiet(kube: KubeCluster) -> None:
    """No CRD (yet): synced with nothing, and polling for it delivers no news."""
    batches: list[Any] = []
    res = Resource("Widget", "example.istiod-py.dev", ("v1",), "widgets")
    inf: Informer[Any] = Informer(kube.client, res, lambda o: o, lambda i, b: batches.append(b))
    inf.ABSENT_RETRY = 0.1
    inf.start()
    try:
        await until(inf.synced.is_set, what="synced")
        await asyncio.sleep(1.0)  # about ten more looks for the CRD
        assert len(batches) == 1 and batches[0].replace and inf.store == {}
    finally:
        await inf.stop()


async def test_service_entry_workload_selector_selects_pods(kube: KubeCluster, watched: Watched) -> None:
    """As Istio: a ServiceEntry's workloadSelector selects the namespace's Pods as well as WorkloadEntries."""
    ns = kube.namespace("sesel")
    kube.apply(f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: db, namespace: {ns}}}
spec:
  hosts: [db.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 5432, name: tcp-db, protocol: TCP, targetPort: 15432}}]
  workloadSelector: {{labels: {{app: db}}}}
""")
    kube.pod(ns, "db-0", "10.244.9.1", {"app": "db"}, node="none-needed", service_account="db")
    kube.pod(ns, "web-0", "10.244.9.2", {"app": "web"}, node="none-needed")
    state = await until(lambda: eps(s := watched.build(), "db.internal") and s, what="the selected Pod")
    (ep,) = state.endpoints["db.internal"]
    assert (ep.address, ep.port, ep.service_account, ep.healthy) == ("10.244.9.1", 15432, "db", True)
    kube.client.patch(f"/api/v1/namespaces/{ns}/pods/web-0", {"metadata": {"labels": {"app": "db"}}})
    await until(
        lambda: set(eps(watched.build(), "db.internal")) == {"10.244.9.1", "10.244.9.2"}, what="a relabelled Pod"
    )


def test_scheduler_binds_pods_to_a_schedulable_node(kube: KubeCluster) -> None:
    """The session runs the real kube-scheduler: a Pod without nodeName is bound
    to a Node that reports capacity (what the one-host node of the companion work relies on)."""
    ns = kube.namespace("sched")
    node = f"sched-{secrets.token_hex(3)}"
    kube.node(node, {"kubernetes.io/hostname": node})
    kube.client.patch(
        f"/api/v1/nodes/{node}/status",
        {
            "status": {
                "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            }
        },
    )
    # The API server taints a new Node not-ready; the node-lifecycle controller (off in the
    # test cluster: no kubelet renews leases) would lift it once Ready. Lift it by hand.
    kube.client.patch(f"/api/v1/nodes/{node}", {"spec": {"taints": None}})
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": ns},
            "spec": {
                "nodeSelector": {"kubernetes.io/hostname": node},
                "automountServiceAccountToken": False,
                "containers": [{"name": "app", "image": "app:1"}],
            },
        }
    )
    wait(lambda: kube.get(f"/api/v1/namespaces/{ns}/pods/p")["spec"].get("nodeName") == node, 30, "the Pod bound")
