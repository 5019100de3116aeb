"""CA callers authenticated by the Kubernetes TokenReview API, as istiod does:
the bearer token is a service-account JWT (audience `istio-ca`); the API server
says whether it is valid and whose it is, and the identity is taken from that
answer (system:serviceaccount:NS:SA), never from the request."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from istiod_py.ca.authn import ChainAuthenticator, KubeJWTAuthenticator
from istiod_py.ca.errors import AuthenticationError
from istiod_py.ca.spiffe import Identity

from .client import KubeApiError, KubeClient

SA_PREFIX = "system:serviceaccount:"
REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"


class KubeTokenReviewer:
    def __init__(self, client: KubeClient) -> None:
        self.client = client

    async def review(self, token: str, audiences: Sequence[str]) -> Identity:
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": list(audiences)},
        }
        try:
            out = await asyncio.to_thread(self.client.create, REVIEW_PATH, body)
        except KubeApiError as e:  # the API server said no to us, not to the caller
            raise AuthenticationError(f"TokenReview failed: {e}") from e
        return identity_from_review(out.get("status") or {}, audiences)


def identity_from_review(status: dict[str, Any], audiences: Sequence[str]) -> Identity:
    if not status.get("authenticated"):
        reason = status.get("error") or "the token is not valid"
        raise AuthenticationError(f"TokenReview: not authenticated: {reason}")
    got = set(status.get("audiences") or [])
    if audiences and not got & set(audiences):
        raise AuthenticationError(f"TokenReview: token audiences {sorted(got)} do not include {list(audiences)}")
    username = str((status.get("user") or {}).get("username") or "")
    if not username.startswith(SA_PREFIX):
        raise AuthenticationError(f"TokenReview: {username!r} is not a service account")
    ns, _, sa = username[len(SA_PREFIX) :].partition(":")
    if not ns or not sa or ":" in sa:
        raise AuthenticationError(f"TokenReview: malformed service-account user {username!r}")
    return Identity(namespace=ns, service_account=sa)


def add_to_ca(ca_runtime: Any, client: KubeClient, audiences: Sequence[str] = ("istio-ca",)) -> None:
    """Adds Kubernetes JWTs to the CA's authenticators (after the ones it has)."""
    kube = KubeJWTAuthenticator(KubeTokenReviewer(client), audiences)
    ca_runtime.authenticator = ChainAuthenticator([ca_runtime.authenticator, kube])
