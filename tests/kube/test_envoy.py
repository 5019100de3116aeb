"""End to end with the real API server: `istiod-py serve --kubeconfig` and a
real Envoy. Services, Pods (their EndpointSlices made by the real controller),
WorkloadEntries and Istio routing created through the API server reach Envoy as
the right clusters, routes and endpoints; updates and deletes too; a
DestinationRule subset on a plain Service selects the right Pods; the API server
restarted mid-watch loses no event.

Pod IPs (10.244.x) are data only: nothing connects to them. Traffic goes to
loopback echo servers that WorkloadEntries (selected by a Kubernetes Service)
point at."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.envoy import EnvoyFactory, EnvoyProcess, envoy_factory_context
from tests.support.kube import KubeCluster
from tests.support.mesh import Mesh
from tests.support.net import allocate_ip
from tests.support.upstreams import HttpEchoServer, UpstreamFactory, http_request


@pytest.fixture
def envoy_factory(tmp_path: Path) -> Iterator[EnvoyFactory]:
    with envoy_factory_context(tmp_path / "envoy") as factory:
        yield factory


@pytest.fixture
def mesh(tmp_path: Path, envoy_factory: EnvoyFactory, kube: KubeCluster) -> Iterator[Mesh]:
    m = Mesh(tmp_path, envoy_factory, extra_args=["--kubeconfig", str(kube.kubeconfig)])
    yield m
    m.stop()


def hosts(sc: EnvoyProcess, cluster: str) -> set[str]:
    return set(sc.cluster_hosts(cluster))


def localities(sc: EnvoyProcess, cluster: str) -> set[tuple[str, str, str]]:
    for c in sc.clusters().get("cluster_statuses", []):
        if c["name"] == cluster:
            return {
                (h["locality"].get("region", ""), h["locality"].get("zone", ""), h["locality"].get("sub_zone", ""))
                for h in c.get("host_statuses", [])
                if "locality" in h
            }
    return set()


def last_push(mesh: Mesh) -> dict[str, Any]:
    pushes: list[dict[str, Any]] = mesh.debug("/debug/push_status")["recent_pushes"]
    return pushes[-1]


def test_pods_reach_envoy_as_endpoints_and_subsets(mesh: Mesh, kube: KubeCluster) -> None:
    ns = kube.namespace("eds")
    node = f"node-{secrets.token_hex(3)}"
    kube.node(node, {"topology.kubernetes.io/region": "eu", "topology.kubernetes.io/zone": "eu-1"})
    kube.apply(f"""
apiVersion: v1
kind: Service
metadata: {{name: reviews, namespace: {ns}}}
spec:
  selector: {{app: reviews}}
  ports: [{{name: http, port: 9080}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: {ns}}}
spec:
  host: reviews
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
""")
    kube.pod(ns, "reviews-v1", "10.244.7.1", {"app": "reviews", "version": "v1"}, node=node, service_account="reviews")
    kube.pod(ns, "reviews-v2", "10.244.7.2", {"app": "reviews", "version": "v2"}, node=node, service_account="reviews")
    Mesh.wait(lambda: len(kube.slice_addresses(ns, "reviews")) == 2, 20, "the controller's EndpointSlice")
    mesh.start()
    sc = mesh.sidecar("client", namespace=ns, labels={"app": "client"})
    host = f"reviews.{ns}.svc.cluster.local"
    all_, v1, v2 = (f"outbound|9080|{s}|{host}" for s in ("", "v1", "v2"))
    sc.wait_for(lambda: hosts(sc, all_) == {"10.244.7.1:9080", "10.244.7.2:9080"}, 20, "both Pods as endpoints")
    sc.wait_for(lambda: hosts(sc, v1) == {"10.244.7.1:9080"}, 10, "subset v1 = the v1 Pod")
    assert hosts(sc, v2) == {"10.244.7.2:9080"}
    assert localities(sc, all_) == {("eu", "eu-1", "")}

    # Update: relabel the v2 Pod as v1. Subsets follow, by an endpoint-only push.
    kube.client.patch(f"/api/v1/namespaces/{ns}/pods/reviews-v2", {"metadata": {"labels": {"version": "v1"}}})
    sc.wait_for(lambda: hosts(sc, v1) == {"10.244.7.1:9080", "10.244.7.2:9080"}, 10, "both Pods in v1")
    sc.wait_for(lambda: hosts(sc, v2) == set(), 10, "subset v2 empty")
    push = last_push(mesh)
    assert push["full"] is False and host in push["eds_hosts"], push

    # Delete: a Pod leaves the endpoints; the DestinationRule's subset clusters go.
    kube.client.request("DELETE", f"/api/v1/namespaces/{ns}/pods/reviews-v1", [("gracePeriodSeconds", "0")])
    sc.wait_for(lambda: hosts(sc, all_) == {"10.244.7.2:9080"}, 15, "the deleted Pod's endpoint gone")
    kube.delete(
        f"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: reviews, namespace: {ns}}}\n"
    )
    sc.wait_for(lambda: v1 not in sc.cluster_names() and all_ in sc.cluster_names(), 10, "subset clusters removed")


def routed(ns: str, bind: str, backend: str, up1: HttpEchoServer, up2: HttpEchoServer) -> str:
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: {backend}, namespace: {ns}}}
spec:
  selector: {{app: {backend}}}
  ports: [{{name: http, port: 9080}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {backend}-v1, namespace: {ns}}}
spec: {{address: {up1.host}, ports: {{http: {up1.port}}}, labels: {{app: {backend}, version: v1}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {backend}-v2, namespace: {ns}}}
spec: {{address: {up2.host}, ports: {{http: {up2.port}}}, labels: {{app: {backend}, version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {backend}, namespace: {ns}}}
spec:
  host: {backend}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: client, namespace: {ns}}}
spec:
  workloadSelector: {{labels: {{app: client}}}}
  egress:
  - port: {{number: 9080, protocol: HTTP, name: http}}
    bind: {bind}
    captureMode: NONE
    hosts: ["./*"]
"""


def virtual_service(ns: str, backend: str, subset: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {backend}, namespace: {ns}}}
spec:
  hosts: [{backend}]
  http:
  - route:
    - destination: {{host: {backend}, subset: {subset}}}
"""


def served_by(bind: str, backend: str, n: int = 10) -> set[str]:
    out = set()
    for _ in range(n):
        r = http_request(bind, 9080, "/", host=f"{backend}:9080")
        out.add(r.json()["server"] if r.status == 200 else str(r.status))
    return out


def test_routing_from_the_api_server_moves_real_traffic(
    mesh: Mesh, kube: KubeCluster, upstreams: UpstreamFactory
) -> None:
    ns = kube.namespace("route")
    up1, up2 = upstreams.http("v1"), upstreams.http("v2")
    bind = allocate_ip()
    kube.apply(routed(ns, bind, "backend", up1, up2), virtual_service(ns, "backend", "v1"))
    mesh.start()
    sc = mesh.sidecar("client", namespace=ns, labels={"app": "client"})
    mesh.wait_listener(sc, f"{bind}_9080")
    mesh.wait(lambda: served_by(bind, "backend") == {"v1"}, 15, "all traffic on v1")

    kube.apply(virtual_service(ns, "backend", "v2"))  # update
    mesh.wait(lambda: served_by(bind, "backend") == {"v2"}, 15, "all traffic on v2")

    kube.delete(virtual_service(ns, "backend", "v2"))  # delete: default routing, both versions
    mesh.wait(lambda: served_by(bind, "backend", 20) == {"v1", "v2"}, 15, "traffic on both versions")


def test_apiserver_restart_mid_watch_loses_no_event(mesh: Mesh, kube: KubeCluster) -> None:
    """Changes made while istiod-py's watches are cut (the API server restarts,
    and they reconnect only after a back-off) all reach Envoy."""
    ns = kube.namespace("restart")
    node = f"node-{secrets.token_hex(3)}"
    kube.node(node, {"topology.kubernetes.io/zone": "z"})
    svc = "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\n" + (
        "spec: {{selector: {{app: {name}}}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}\n"
    )
    kube.apply(svc.format(name="old", ns=ns), svc.format(name="kept", ns=ns))
    kube.pod(ns, "kept-1", "10.244.8.1", {"app": "kept"}, node=node)
    mesh.start()
    sc = mesh.sidecar("client", namespace=ns)
    fqdn = f".{ns}.svc.cluster.local"
    old, kept, new = (f"outbound|80||{n}{fqdn}" for n in ("old", "kept", "new"))
    sc.wait_for(lambda: hosts(sc, kept) == {"10.244.8.1:8080"} and old in sc.cluster_names(), 20, "initial state")

    kube.restart_apiserver()
    # Right after the restart, before the watches come back (they back off):
    kube.apply(svc.format(name="new", ns=ns))
    kube.delete(svc.format(name="old", ns=ns))
    kube.pod(ns, "kept-2", "10.244.8.2", {"app": "kept"}, node=node)
    kube.apply(
        f"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: kept, namespace: {ns}}}\n"
        "spec: {host: kept, subsets: [{name: a, labels: {app: kept}}]}\n"
    )
    sc.wait_for(lambda: new in sc.cluster_names() and old not in sc.cluster_names(), 30, "new in, old out")
    sc.wait_for(lambda: hosts(sc, kept) == {"10.244.8.1:8080", "10.244.8.2:8080"}, 30, "the new Pod's endpoint")
    sc.wait_for(lambda: f"outbound|80|a|kept{fqdn}" in sc.cluster_names(), 30, "the DestinationRule's subset")
    # The watches really were cut (and came back): not a restart nobody noticed.
    assert "retrying in" in mesh.log_path.read_text(errors="replace"), mesh.log_tail()
