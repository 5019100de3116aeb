"""Gateway credentials from real Secrets: both key layouts, the `-cacert`
convention, rotation reported to listeners, and Istio's authorization rule
(own namespace, or `list secrets` granted by RBAC) via SubjectAccessReview."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

from istiod_py.kube.secrets import SecretAuthorizer, SecretStore
from tests.kube.test_source import until
from tests.support.kube import KubeCluster


def secret(ns: str, name: str, data: dict[str, bytes], type_: str = "Opaque") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": type_,
        "metadata": {"name": name, "namespace": ns},
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


async def test_secret_store_layouts_cacert_and_rotation(kube: KubeCluster) -> None:
    ns = await asyncio.to_thread(kube.namespace, "gw")
    store = SecretStore(kube.client)
    changed: list[tuple[str, str]] = []
    store.listeners.append(lambda n, name: changed.append((n, name)))
    store.start()
    try:
        await until(store.synced.is_set, what="synced")
        tls = {"tls.crt": b"CERT1", "tls.key": b"KEY1"}
        await asyncio.to_thread(kube.apply, secret(ns, "web", tls, "kubernetes.io/tls"))
        await asyncio.to_thread(kube.apply, secret(ns, "web-cacert", {"ca.crt": b"CA"}))
        await asyncio.to_thread(kube.apply, secret(ns, "api", {"cert": b"C", "key": b"K", "cacert": b"CA2"}))
        cred = await until(lambda: (c := store.get(ns, "web")) and c.ca_cert and c, what="web + web-cacert")
        assert (cred.cert_chain, cred.private_key, cred.ca_cert) == (b"CERT1", b"KEY1", b"CA")
        api = await until(lambda: store.get(ns, "api"), what="the generic layout")
        assert (api.cert_chain, api.private_key, api.ca_cert) == (b"C", b"K", b"CA2")
        changed.clear()
        rotated = secret(ns, "web", {"tls.crt": b"CERT2", "tls.key": b"KEY2"}, "kubernetes.io/tls")
        await asyncio.to_thread(kube.apply, rotated)
        await until(lambda: store.get(ns, "web").cert_chain == b"CERT2", what="the rotated certificate")  # type: ignore[union-attr]
        assert (ns, "web") in changed
        assert store.get(ns, "missing") is None
    finally:
        await store.stop()


def test_cross_namespace_secrets_need_rbac(kube: KubeCluster) -> None:
    gw_ns, certs_ns = kube.namespace("gwns"), kube.namespace("certs")
    kube.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "ingress", "namespace": gw_ns}})
    auth = SecretAuthorizer(kube.client)
    assert auth.allowed(gw_ns, "ingress", gw_ns)
    assert not auth.allowed(gw_ns, "ingress", certs_ns)
    kube.apply(
        f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: read-secrets, namespace: {certs_ns}}}
rules: [{{apiGroups: [""], resources: [secrets], verbs: [list]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: ingress-reads, namespace: {certs_ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: read-secrets}}
subjects: [{{kind: ServiceAccount, name: ingress, namespace: {gw_ns}}}]
"""
    )
    # The API server's RBAC authorizer learns the new binding through its informer:
    # eventually consistent, so the grant is awaited (bounded), the refusal is not.
    deadline = time.monotonic() + 15
    while not auth.allowed(gw_ns, "ingress", certs_ns):
        assert time.monotonic() < deadline, "the RoleBinding never allowed the gateway's service account"
        time.sleep(0.2)
    assert not auth.allowed(gw_ns, "other", certs_ns)
