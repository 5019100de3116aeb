"""The validating webhook with the real API server: a VirtualService the schema
accepts but Istio's validation refuses is refused at admission, with the field
named, before it is stored; a good one is stored."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from istiod_py.ca import CertificateAuthority, load_or_create_root
from istiod_py.kube.client import KubeApiError
from istiod_py.kube.webhook import ValidationWebhook, admission_response, webhook_configuration
from tests.support.kube import KubeCluster


def vs(ns: str, name: str, regex: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "hosts": ["web"],
            "http": [{"match": [{"uri": {"regex": regex}}], "route": [{"destination": {"host": "web"}}]}],
        },
    }


def test_admission_response_names_the_field() -> None:
    review = {
        "request": {
            "uid": "u1",
            "operation": "CREATE",
            "kind": {"group": "networking.istio.io", "version": "v1", "kind": "VirtualService"},
            "namespace": "default",
            "object": vs("default", "bad", "(["),
        }
    }
    resp = admission_response(review)["response"]
    assert resp["uid"] == "u1" and resp["allowed"] is False
    assert "spec.http[0].match[0].uri.regex" in resp["status"]["message"]
    review["request"]["object"] = vs("default", "good", "/api/.*")
    assert admission_response(review)["response"]["allowed"] is True
    review["request"]["operation"] = "DELETE"
    review["request"]["object"] = None
    assert admission_response(review)["response"]["allowed"] is True


async def test_bad_virtual_service_refused_at_admission(kube: KubeCluster, tmp_path: Path) -> None:
    ca = CertificateAuthority(load_or_create_root(tmp_path / "ca"))
    hook = ValidationWebhook(ca, "127.0.0.1", 0)
    port = await hook.start()
    ns = await asyncio.to_thread(kube.namespace, "adm")
    config = webhook_configuration(f"https://127.0.0.1:{port}/validate", ca.root_pem, name=f"validator-{ns}")
    # Only this test's namespace: other tests must not depend on this server.
    config["webhooks"][0]["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": ns}}
    await asyncio.to_thread(kube.apply, config)
    try:
        refused: KubeApiError | None = None
        for _ in range(100):  # the API server picks up a new webhook configuration within moments
            try:
                await asyncio.to_thread(kube.apply, vs(ns, "bad", "(["))
            except KubeApiError as e:
                refused = e
                break
            await asyncio.to_thread(kube.delete, vs(ns, "bad", "(["))
            await asyncio.sleep(0.1)
        assert refused is not None, "the webhook never refused the bad VirtualService"
        assert 'admission webhook "validation.istio.io" denied the request' in refused.message
        assert "spec.http[0].match[0].uri.regex" in refused.message
        with pytest.raises(KubeApiError) as err:
            await asyncio.to_thread(kube.get, f"/apis/networking.istio.io/v1/namespaces/{ns}/virtualservices/bad")
        assert err.value.status == 404  # never stored
        stored = await asyncio.to_thread(kube.apply, vs(ns, "good", "/api/.*"))
        assert stored[0]["metadata"]["name"] == "good"
    finally:
        await asyncio.to_thread(kube.delete, config)
        await hook.stop()
