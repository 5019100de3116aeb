"""`serve --kubeconfig` serves /validate on its webhook port, and the leader
(only) patches the mesh root into the ValidatingWebhookConfiguration labelled
with its revision and turns its failurePolicy from Ignore to Fail, as istiod's
webhook controller does; the real API server then calls the replica and refuses
a bad VirtualService. The configuration reaches the replica by
`clientConfig.url` on loopback (the API server has no node to reach a Service)."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from istiod_py.kube.client import KubeApiError
from istiod_py.kube.webhook import webhook_configuration
from tests.kube.test_replicas import holder
from tests.kube.test_webhook import vs
from tests.support.envoy import EnvoyFactory, envoy_factory_context
from tests.support.kube import KubeCluster, wait
from tests.support.mesh import Mesh

VWC = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"


@pytest.fixture
def envoy_factory(tmp_path: Path) -> Iterator[EnvoyFactory]:
    with envoy_factory_context(tmp_path / "envoy") as factory:
        yield factory


def _refused(kube: KubeCluster, ns: str) -> KubeApiError | None:
    try:
        kube.apply(vs(ns, "bad", "(["))
    except KubeApiError as e:
        return e
    kube.delete(vs(ns, "bad", "(["))
    return None


def test_served_validate_and_leader_patches_ca_bundle(
    tmp_path: Path, envoy_factory: EnvoyFactory, kube: KubeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ISTIOD_PY_LEASE_DURATION", "3")
    monkeypatch.setenv("ISTIOD_PY_LEASE_RETRY", "0.5")
    monkeypatch.setenv("ISTIOD_PY_WEBHOOK_RESYNC", "0.5")
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}})
    ns = kube.namespace("val")
    replicas: list[Mesh] = []
    for i in range(2):
        m = Mesh(tmp_path / f"r{i}", envoy_factory, extra_args=["--kubeconfig", str(kube.kubeconfig)])
        m.workdir.mkdir(parents=True, exist_ok=True)
        if i == 1:  # one root for both, as replicas sharing the cacerts Secret
            (m.workdir / "ca").symlink_to(replicas[0].ca_dir)
        replicas.append(m.start_with_ca())
    name = f"istio-validator-{ns}"
    cfg: dict[str, Any] = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                           "metadata": {"name": name}}  # fmt: skip
    try:
        lead_id = wait(lambda: holder(kube), 15, "a Lease holder")
        leader = next(m for m in replicas if m.proc is not None and f"_{m.proc.pid}_" in lead_id)
        follower = next(m for m in replicas if m is not leader)
        # As install renders it: no caBundle yet, Ignore until istiod answers. It
        # calls the follower: both replicas serve, only the leader patches.
        cfg = webhook_configuration(f"https://127.0.0.1:{follower.webhook_port}/validate", "", name=name)
        cfg["metadata"]["labels"] = {"app": "istiod", "istio.io/rev": "default"}
        hook = cfg["webhooks"][0]
        hook["clientConfig"].pop("caBundle")
        hook["failurePolicy"] = "Ignore"
        hook["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": ns}}
        kube.apply(cfg)
        root = leader.root_cert.read_text()
        bundle = base64.b64encode(root.encode()).decode()

        def patched() -> bool:
            h = kube.get(f"{VWC}/{name}")["webhooks"][0]
            return bool(h["clientConfig"].get("caBundle") == bundle and h["failurePolicy"] == "Fail")

        wait(patched, 20, "caBundle = the mesh root and failurePolicy Fail")
        err = wait(lambda: _refused(kube, ns), 20, "the bad VirtualService refused at admission")
        assert 'admission webhook "validation.istio.io" denied the request' in err.message
        assert "spec.http[0].match[0].uri.regex" in err.message
        assert kube.apply(vs(ns, "good", "/api/.*"))[0]["metadata"]["name"] == "good"
        # The patch was the leader's alone; the follower answered the admission calls.
        assert f"caBundle of {name} set to the mesh root" in leader.log_path.read_text()
        assert f"caBundle of {name}" not in follower.log_path.read_text()
        # An edit that drops the caBundle is repaired.
        kube.client.patch(f"{VWC}/{name}", [{"op": "remove", "path": "/webhooks/0/clientConfig/caBundle"}],
                          "application/json-patch+json")  # fmt: skip
        wait(patched, 20, "the caBundle restored")
    finally:
        with contextlib.suppress(KubeApiError):
            kube.delete(cfg)
        for m in replicas:
            m.stop()
