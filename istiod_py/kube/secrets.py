"""Gateway credentials from Kubernetes Secrets, for `credentialName` (Gateway
servers, DestinationRule `tls.credentialName`), as istiod reads them:

- `kubernetes.io/tls` keys `tls.crt` / `tls.key` (and `ca.crt` for mutual TLS),
  or the generic keys `cert` / `key` (and `cacert`);
- the CA for client validation may live in its own Secret `<name>-cacert`
  (`ca.crt` or `cacert`), Istio's convention;
- a gateway may read Secrets of its own namespace; another namespace's only if
  its service account may `list secrets` there (a SubjectAccessReview asks the
  API server, as istiod does).

`SecretStore` keeps them current (an informer) and tells listeners which
credential changed, so the xDS side can push the rotated certificate over SDS.
kube/credentials.py serves them over SDS."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .client import JsonObj, KubeApiError, KubeClient
from .informer import Batch, Informer, Resource

log = logging.getLogger("istiod_py.kube.secrets")

SECRETS = Resource("Secret", "", ("v1",), "secrets")
CACERT_SUFFIX = "-cacert"
_CERT_KEYS = (("tls.crt", "tls.key"), ("cert", "key"))
_CA_KEYS = ("ca.crt", "cacert")


@dataclass(frozen=True)
class TlsCredential:
    cert_chain: bytes = b""
    private_key: bytes = b""
    ca_cert: bytes = b""

    @property
    def has_key_pair(self) -> bool:
        return bool(self.cert_chain and self.private_key)


def credential_from_secret(obj: JsonObj) -> TlsCredential | None:
    """The credential a Secret holds, or None when it holds none of the known keys."""
    data = obj.get("data") or {}

    def get(key: str) -> bytes:
        raw = data.get(key)
        return base64.b64decode(raw) if raw else b""

    cert = key = b""
    for ck, kk in _CERT_KEYS:
        if ck in data and kk in data:
            cert, key = get(ck), get(kk)
            break
    ca = next((get(k) for k in _CA_KEYS if k in data), b"")
    if not (cert or ca):
        return None
    return TlsCredential(cert, key, ca)


class SecretStore:
    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self.listeners: list[Callable[[str, str], None]] = []
        self.informer: Informer[TlsCredential] = Informer(client, SECRETS, credential_from_secret, self._on_batch)

    def start(self) -> None:
        self.informer.start()

    async def stop(self) -> None:
        await self.informer.stop()

    @property
    def synced(self) -> Any:
        return self.informer.synced

    def ca_only(self, namespace: str, name: str) -> bytes:
        """The CA for SDS resource `<name>-cacert`: Secret `<name>-cacert`, else `ca.crt` of `<name>`."""
        ca = self.informer.store.get((namespace, name + CACERT_SUFFIX))
        if ca is not None and ca.ca_cert:
            return ca.ca_cert
        own = self.informer.store.get((namespace, name))
        return own.ca_cert if own is not None else b""

    def get(self, namespace: str, name: str) -> TlsCredential | None:
        """The server credential, its CA from the same Secret or from `<name>-cacert`."""
        own = self.informer.store.get((namespace, name))
        if own is not None and own.ca_cert:
            return own
        ca = self.informer.store.get((namespace, name + CACERT_SUFFIX))
        if own is None:
            return None
        return TlsCredential(own.cert_chain, own.private_key, ca.ca_cert if ca is not None else b"")

    def _on_batch(self, inf: Informer[TlsCredential], batch: Batch[TlsCredential]) -> None:
        for ns, name in batch.changes:
            base = name[: -len(CACERT_SUFFIX)] if name.endswith(CACERT_SUFFIX) else name
            for listener in self.listeners:
                listener(ns, base)


class SecretAuthorizer:
    """May a gateway (namespace, service account) read Secrets of `secret_namespace`?"""

    def __init__(self, client: KubeClient) -> None:
        self.client = client

    def allowed(self, proxy_namespace: str, service_account: str, secret_namespace: str) -> bool:
        if proxy_namespace == secret_namespace:
            return True
        return self.may_list(proxy_namespace, service_account, secret_namespace)

    def may_list(self, proxy_namespace: str, service_account: str, secret_namespace: str) -> bool:
        """SubjectAccessReview: may this service account `list secrets` in `secret_namespace`?
        istiod asks it for the proxy's own namespace before serving a `kubernetes://`
        credential (kube/credentials.py)."""
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": f"system:serviceaccount:{proxy_namespace}:{service_account}",
                "groups": ["system:serviceaccounts", f"system:serviceaccounts:{proxy_namespace}"],
                "resourceAttributes": {"namespace": secret_namespace, "verb": "list", "resource": "secrets"},
            },
        }
        try:
            out = self.client.create("/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
        except KubeApiError as e:
            log.warning("SubjectAccessReview for %s/%s failed: %s", proxy_namespace, service_account, e)
            return False
        return bool((out.get("status") or {}).get("allowed"))
