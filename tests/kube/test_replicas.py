"""Cluster duties with real replicas: two `istiod-py serve --kubeconfig` against
one API server elect one leader with a Lease, both serve xDS, and when the
leader dies the other takes the Lease; the leader publishes the root
certificate as ConfigMap istio-ca-root-cert in every namespace and repairs it."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from istiod_py.kube.client import KubeApiError
from tests.support.envoy import EnvoyFactory, envoy_factory_context
from tests.support.kube import KubeCluster, wait
from tests.support.mesh import Mesh

LEASE = "/apis/coordination.k8s.io/v1/namespaces/istio-system/leases/istiod-py-leader"


@pytest.fixture
def envoy_factory(tmp_path: Path) -> Iterator[EnvoyFactory]:
    with envoy_factory_context(tmp_path / "envoy") as factory:
        yield factory


@pytest.fixture
def fast_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    # Inherited by the istiod-py processes: a 3 s lease, renewed every 0.5 s.
    monkeypatch.setenv("ISTIOD_PY_LEASE_DURATION", "3")
    monkeypatch.setenv("ISTIOD_PY_LEASE_RETRY", "0.5")


def holder(kube: KubeCluster) -> str:
    try:
        return str(kube.get(LEASE)["spec"].get("holderIdentity") or "")
    except KubeApiError:
        return ""


def root_cm(kube: KubeCluster, ns: str) -> str:
    try:
        cm = kube.get(f"/api/v1/namespaces/{ns}/configmaps/istio-ca-root-cert")
    except KubeApiError:
        return ""
    return str((cm.get("data") or {}).get("root-cert.pem") or "")


def test_two_replicas_one_leader_both_serving_and_failover(
    tmp_path: Path, envoy_factory: EnvoyFactory, kube: KubeCluster, fast_lease: None
) -> None:
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}})
    ns = kube.namespace("rep")
    kube.apply(
        f"apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {ns}}}\n"
        "spec: {ports: [{name: http, port: 80}]}\n"
    )
    replicas = []
    for i in range(2):
        m = Mesh(tmp_path / f"r{i}", envoy_factory, extra_args=["--kubeconfig", str(kube.kubeconfig)])
        # One CA root for both, as replicas sharing the cacerts Secret would have.
        m.workdir.mkdir(parents=True, exist_ok=True)
        if i == 1:
            (m.workdir / "ca").symlink_to(replicas[0].ca_dir)
        replicas.append(m.start_with_ca())
    try:
        pids = {m.proc.pid: m for m in replicas if m.proc is not None}
        lead_id = wait(lambda: holder(kube), 15, "a Lease holder")
        leader = next(m for pid, m in pids.items() if f"_{pid}_" in lead_id)
        follower = next(m for m in replicas if m is not leader)
        # Both serve xDS: a proxy on each gets the Service from the cluster.
        cluster = f"outbound|80||web.{ns}.svc.cluster.local"
        for i, m in enumerate(replicas):
            sc = m.sidecar(f"client-{i}", namespace=ns)
            sc.wait_for(lambda sc=sc: cluster in sc.cluster_names(), 15, f"{cluster} from replica {i}")
        # The leader publishes the root certificate.
        root = leader.root_cert.read_text()
        wait(lambda: root_cm(kube, ns) == root, 15, "istio-ca-root-cert in the namespace")

        # The leader dies without releasing the Lease; the follower takes it after it expires.
        assert leader.proc is not None
        os.kill(leader.proc.pid, signal.SIGKILL)
        leader.proc.wait(10)
        assert follower.proc is not None
        wait(lambda: f"_{follower.proc.pid}_" in holder(kube), 20, "the follower holding the Lease")
        # ...and takes over the duties: a new namespace gets the root certificate.
        ns2 = kube.namespace("rep2")
        wait(lambda: root_cm(kube, ns2) == root, 15, "istio-ca-root-cert from the new leader")
    finally:
        for m in replicas:
            m.stop()
    # A clean stop releases the Lease.
    wait(lambda: holder(kube) == "", 10, "the Lease released on SIGTERM")


def test_root_cert_configmap_repaired(tmp_path: Path, envoy_factory: EnvoyFactory, kube: KubeCluster) -> None:
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}})
    mesh = Mesh(tmp_path, envoy_factory, extra_args=["--kubeconfig", str(kube.kubeconfig)])
    mesh.start_with_ca()
    try:
        root = mesh.root_cert.read_text()
        ns = kube.namespace("root")
        wait(lambda: root_cm(kube, ns) == root, 15, "istio-ca-root-cert in a new namespace")
        path = f"/api/v1/namespaces/{ns}/configmaps/istio-ca-root-cert"
        kube.client.patch(path, {"data": {"root-cert.pem": "tampered"}})
        wait(lambda: root_cm(kube, ns) == root, 15, "the edited ConfigMap repaired")
        kube.client.delete(path)
        wait(lambda: root_cm(kube, ns) == root, 15, "the deleted ConfigMap recreated")
        assert root_cm(kube, "kube-system") == ""  # Kubernetes' own namespaces are left alone
    finally:
        mesh.stop()
