"""istiod-py runs with only the permissions deploy/kube/istiod-rbac.yaml grants
its ServiceAccount: discovery reaches Envoy, the CA reviews tokens, the Lease is
taken and the root certificate published, and nothing is Forbidden."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.kube.test_ca_tokenreview import create_certificate, csr, token
from tests.kube.test_replicas import LEASE, holder, root_cm
from tests.support.envoy import EnvoyFactory, envoy_factory_context
from tests.support.kube import ROOT, KubeCluster, wait
from tests.support.mesh import Mesh


@pytest.fixture
def envoy_factory(tmp_path: Path) -> Iterator[EnvoyFactory]:
    with envoy_factory_context(tmp_path / "envoy") as factory:
        yield factory


async def test_serve_with_the_shipped_rbac_only(tmp_path: Path, envoy_factory: EnvoyFactory, kube: KubeCluster) -> None:
    kube.apply((ROOT / "deploy/kube/istiod-rbac.yaml").read_text())
    sa_token = kube.client.create(
        "/api/v1/namespaces/istio-system/serviceaccounts/istiod-py/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )["status"]["token"]
    cfg = yaml.safe_load(kube.kubeconfig.read_text())
    cfg["users"][0]["user"] = {"token": sa_token}
    kubeconfig = tmp_path / "istiod-py.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(cfg))
    ns = kube.namespace("rbac")
    kube.apply(
        f"apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {ns}}}\n"
        "spec: {ports: [{name: http, port: 80}]}\n"
    )
    mesh = Mesh(tmp_path / "mesh", envoy_factory, extra_args=["--kubeconfig", str(kubeconfig)])
    try:
        mesh.start_with_ca()
        sc = mesh.sidecar("client", namespace=ns)
        sc.wait_for(lambda: f"outbound|80||web.{ns}.svc.cluster.local" in sc.cluster_names(), 15, "the Service")
        root = mesh.root_cert.read_text()
        wait(lambda: root_cm(kube, ns) == root, 15, "istio-ca-root-cert published")
        assert mesh.proc is not None and f"_{mesh.proc.pid}_" in holder(kube), kube.get(LEASE)
        uri = f"spiffe://cluster.local/ns/{ns}/sa/sleep"
        chain = await create_certificate(mesh, csr(uri), token(kube, ns, "sleep"))
        assert chain
        log = mesh.log_path.read_text(errors="replace")
        assert "Forbidden" not in log, mesh.log_tail()
    finally:
        mesh.stop()
