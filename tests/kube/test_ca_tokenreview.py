"""The CA authenticates callers with the real TokenReview API: a service-account
token with audience istio-ca gets the pod's SPIFFE identity (taken from the
review, not from the request); a token for another service account, another
audience or no account gets nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from istiod_py.ca._proto import ca_pb2, ca_pb2_grpc
from istiod_py.ca.errors import AuthenticationError
from istiod_py.ca.spiffe import Identity
from istiod_py.kube.tokenreview import KubeTokenReviewer
from tests.support.envoy import EnvoyFactory, envoy_factory_context
from tests.support.kube import KubeCluster
from tests.support.mesh import Mesh


def token(kube: KubeCluster, ns: str, sa: str, audience: str = "istio-ca") -> str:
    kube.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": ns}})
    out = kube.client.create(
        f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"audiences": [audience]}},
    )
    return str(out["status"]["token"])


async def test_reviewer_maps_tokens_to_identities(kube: KubeCluster) -> None:
    ns = kube.namespace("tr")
    reviewer = KubeTokenReviewer(kube.client)
    assert await reviewer.review(token(kube, ns, "sleep"), ["istio-ca"]) == Identity(ns, "sleep")
    with pytest.raises(AuthenticationError, match="not authenticated"):
        await reviewer.review(token(kube, ns, "sleep", audience="something-else"), ["istio-ca"])
    with pytest.raises(AuthenticationError, match="not authenticated"):
        await reviewer.review("not-a-jwt", ["istio-ca"])


@pytest.fixture
def envoy_factory(tmp_path: Path) -> Iterator[EnvoyFactory]:
    with envoy_factory_context(tmp_path / "envoy") as factory:
        yield factory


def csr(uri: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    b = b.add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), False)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


async def create_certificate(mesh: Mesh, csr_pem: str, bearer: str) -> list[str]:
    creds = grpc.ssl_channel_credentials(root_certificates=mesh.root_cert.read_bytes())
    async with grpc.aio.secure_channel(
        f"{mesh.host}:{mesh.secure_port}", creds, options=[("grpc.ssl_target_name_override", "istiod.istio-system.svc")]
    ) as ch:
        stub = ca_pb2_grpc.IstioCertificateServiceStub(ch)
        req = ca_pb2.IstioCertificateRequest(csr=csr_pem, validity_duration=600)
        resp = await stub.CreateCertificate(req, metadata=[("authorization", f"Bearer {bearer}")], timeout=10)
        return list(resp.cert_chain)


def uris(pem: str) -> list[str]:
    cert = x509.load_pem_x509_certificate(pem.encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(u) for u in san.get_values_for_type(x509.UniformResourceIdentifier)]


async def test_serve_with_kubeconfig_signs_for_the_reviewed_identity_only(
    tmp_path: Path, envoy_factory: EnvoyFactory, kube: KubeCluster
) -> None:
    ns = kube.namespace("ca")
    sleep_token = token(kube, ns, "sleep")
    mesh = Mesh(tmp_path, envoy_factory, extra_args=["--kubeconfig", str(kube.kubeconfig)])
    mesh.start_with_ca()
    try:
        mine = f"spiffe://cluster.local/ns/{ns}/sa/sleep"
        chain = await create_certificate(mesh, csr(mine), sleep_token)
        assert uris(chain[0]) == [mine]
        with pytest.raises(grpc.aio.AioRpcError) as err:  # sleep's token, another account's identity
            await create_certificate(mesh, csr(f"spiffe://cluster.local/ns/{ns}/sa/admin"), sleep_token)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as err:  # a token for another audience
            await create_certificate(mesh, csr(mine), token(kube, ns, "sleep", audience="other"))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "TokenReview" in (err.value.details() or "")
    finally:
        mesh.stop()
