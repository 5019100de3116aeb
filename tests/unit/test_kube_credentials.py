"""SDS for credentialName (kube/credentials.py) without a cluster: the names a
router's own listeners and clusters reference, istiod's authorization rule
(own namespace + `list secrets`; CA-only free; another namespace never;
`kubernetes-gateway://` when referenced), and the secrets' contents."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2

from istiod_py.kube.credentials import GatewayCredentials, parse_name, referenced_names
from istiod_py.kube.secrets import SecretAuthorizer, SecretStore, TlsCredential
from istiod_py.translate.generate import Translator
from istiod_py.xds.types import TypeUrl
from tests.unit.test_gateway_translate import router, state_of

CONFIG = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8443, name: https, protocol: HTTPS}
    hosts: [a.example.com]
    tls: {mode: MUTUAL, credentialName: a-cert}
  - port: {number: 8444, name: https-b, protocol: HTTPS}
    hosts: [b.example.com]
    tls: {mode: SIMPLE, credentialName: "kubernetes://other/b-cert"}
  - port: {number: 8445, name: https-c, protocol: HTTPS}
    hosts: [c.example.com]
    tls: {mode: SIMPLE, credentialName: "kubernetes-gateway://other/c-cert"}
---
apiVersion: v1
kind: Service
metadata: {name: up, namespace: default}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: up, namespace: default}
spec:
  host: up.default.svc.cluster.local
  trafficPolicy: {tls: {mode: MUTUAL, credentialName: up-client, subjectAltNames: [up.example.com]}}
"""


class FakeStore:
    def __init__(self, creds: dict[tuple[str, str], TlsCredential]) -> None:
        self.creds = creds
        self.listeners: list[Any] = []

    def get(self, ns: str, name: str) -> TlsCredential | None:
        return self.creds.get((ns, name))

    def ca_only(self, ns: str, name: str) -> bytes:
        c = self.creds.get((ns, name))
        return c.ca_cert if c else b""


class FakeAuthorizer:
    def __init__(self, allowed: bool) -> None:
        self.allowed = allowed
        self.asked: list[tuple[str, str, str]] = []

    def may_list(self, ns: str, sa: str, secret_ns: str) -> bool:
        self.asked.append((ns, sa, secret_ns))
        return self.allowed


CREDS = {
    ("istio-system", "a-cert"): TlsCredential(b"A-CHAIN", b"A-KEY", b"A-CA"),
    ("other", "b-cert"): TlsCredential(b"B", b"BK"),
    ("other", "c-cert"): TlsCredential(b"C", b"CK"),
    ("istio-system", "up-client"): TlsCredential(b"U", b"UK", b"U-CA"),
}


def test_names_referenced_by_listeners_and_clusters() -> None:
    st, gw = state_of(CONFIG), router()
    tr = Translator()
    names = referenced_names(tr.generate(st, gw, TypeUrl.LISTENER)) | referenced_names(
        tr.generate(st, gw, TypeUrl.CLUSTER)
    )
    assert names == {
        "kubernetes://a-cert",
        "kubernetes://a-cert-cacert",
        "kubernetes://other/b-cert",
        "kubernetes-gateway://other/c-cert",
        "kubernetes://up-client",
        "kubernetes://up-client-cacert",
    }
    cluster = tr.generate(st, gw, TypeUrl.CLUSTER).index["outbound|80||up.default.svc.cluster.local"].message()
    ctx = tls_pb2.UpstreamTlsContext()
    cluster.transport_socket.typed_config.Unpack(ctx)  # type: ignore[attr-defined]
    vc = ctx.common_tls_context.combined_validation_context
    assert [s.matcher.exact for s in vc.default_validation_context.match_typed_subject_alt_names] == ["up.example.com"]
    assert vc.validation_context_sds_secret_config.sds_config.HasField("ads")


def test_parse_name() -> None:
    assert parse_name("kubernetes://x", "ns") == ("kubernetes://", "ns", "x")
    assert parse_name("kubernetes://o/x", "ns") == ("kubernetes://", "o", "x")
    assert parse_name("kubernetes-gateway://o/x", "ns") == ("kubernetes-gateway://", "o", "x")
    assert parse_name("kubernetes-gateway://x", "ns") is None
    assert parse_name("default", "ns") is None


def _served(allowed: bool) -> tuple[dict[str, Any], FakeAuthorizer]:
    async def run() -> tuple[dict[str, Any], FakeAuthorizer]:
        auth = FakeAuthorizer(allowed)
        pushes: list[str] = []
        creds = GatewayCredentials(cast(SecretStore, FakeStore(CREDS)), cast(SecretAuthorizer, auth), pushes.append)
        st, gw = state_of(CONFIG), router()
        gen = creds.wrap(Translator().generate)
        first = gen(st, gw, TypeUrl.SECRET).index  # the access check runs in a thread...
        assert "kubernetes://a-cert" not in first and "kubernetes://a-cert-cacert" in first
        for _ in range(100):
            if pushes or (auth.asked and allowed is False):
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)
        assert bool(pushes) == allowed  # ...and a grant pushes the proxies
        return {n: b.message() for n, b in gen(st, gw, TypeUrl.SECRET).index.items()}, auth

    return asyncio.run(run())


def test_own_namespace_with_access_is_served_other_namespace_never() -> None:
    served, auth = _served(True)
    assert auth.asked == [("istio-system", "default", "istio-system")]
    assert set(served) == {
        "kubernetes://a-cert",
        "kubernetes://a-cert-cacert",
        "kubernetes-gateway://other/c-cert",  # referenced by the proxy's own config: verified
        "kubernetes://up-client",
        "kubernetes://up-client-cacert",
    }
    a = cast(secret_pb2.Secret, served["kubernetes://a-cert"])
    assert a.tls_certificate.certificate_chain.inline_bytes == b"A-CHAIN"
    assert a.tls_certificate.private_key.inline_bytes == b"A-KEY"
    ca = cast(secret_pb2.Secret, served["kubernetes://a-cert-cacert"])
    assert ca.validation_context.trusted_ca.inline_bytes == b"A-CA"


def test_without_access_only_ca_and_verified_references() -> None:
    served, _ = _served(False)
    assert set(served) == {
        "kubernetes://a-cert-cacert",
        "kubernetes-gateway://other/c-cert",
        "kubernetes://up-client-cacert",
    }
