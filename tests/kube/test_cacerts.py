"""Plug-in CA from the `cacerts` Secret: `serve --kubeconfig` (no --cacerts-dir)
signs with the Secret's CA, so workload certificates chain to its root."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.kube.test_ca_tokenreview import create_certificate, csr, token
from tests.support.envoy import EnvoyFactory, envoy_factory_context
from tests.support.kube import KubeCluster
from tests.support.mesh import Mesh
from tests.unit.test_ca import make_plugin_dir


@pytest.fixture
def envoy_factory(tmp_path: Path) -> Iterator[EnvoyFactory]:
    with envoy_factory_context(tmp_path / "envoy") as factory:
        yield factory


async def test_plugin_ca_from_the_cacerts_secret(
    tmp_path: Path, envoy_factory: EnvoyFactory, kube: KubeCluster
) -> None:
    root, _inter, ca_cert = make_plugin_dir(tmp_path / "plugin")
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}})
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "cacerts", "namespace": "istio-system"},
        "data": {f.name: base64.b64encode(f.read_bytes()).decode() for f in (tmp_path / "plugin").iterdir()},
    }
    ns = kube.namespace("plug")
    kube.apply(secret)
    mesh = Mesh(tmp_path / "mesh", envoy_factory, extra_args=["--kubeconfig", str(kube.kubeconfig)])
    try:
        mesh.start_with_ca()
        assert x509.load_pem_x509_certificate(mesh.root_cert.read_bytes()) == root
        uri = f"spiffe://cluster.local/ns/{ns}/sa/sleep"
        chain = await create_certificate(mesh, csr(uri), token(kube, ns, "sleep"))
        leaf = x509.load_pem_x509_certificate(chain[0].encode())
        assert leaf.issuer == ca_cert.subject  # signed by the Secret's CA, not a self-signed one
    finally:
        mesh.stop()
        kube.delete(secret)  # later tests' control planes must not inherit it
