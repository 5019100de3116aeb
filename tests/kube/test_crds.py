"""The CRDs in deploy/crds are generated from the protos and current; the real
API server accepts them, stores a resource of every kind at every served
version, and refuses what the schema forbids, naming the field."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from istiod_py.config.model import KINDS
from istiod_py.kube import crds
from istiod_py.kube.client import KubeApiError
from istiod_py.kube.source import KubeSource
from tests.support.kube import CRD_DIR, KubeCluster

# A small valid spec of every kind the loader accepts. A kind added to
# config/model.py KINDS without an example here fails test_every_kind_has_an_example.
EXAMPLES: dict[str, dict[str, Any]] = {
    "VirtualService": {"hosts": ["a"], "http": [{"route": [{"destination": {"host": "a"}}], "timeout": "5s"}]},
    "DestinationRule": {"host": "a", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]},
    "Gateway": {
        "selector": {"istio": "ingressgateway"},
        "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}],
    },
    "ServiceEntry": {
        "hosts": ["ext.example.com"],
        "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
        "resolution": "DNS",
        "location": "MESH_EXTERNAL",
    },
    "WorkloadEntry": {"address": "10.1.2.3", "labels": {"app": "a"}, "serviceAccount": "a"},
    "Sidecar": {"egress": [{"hosts": ["./*"]}]},
    "EnvoyFilter": {
        "configPatches": [
            {
                "applyTo": "CLUSTER",
                "match": {"context": "SIDECAR_OUTBOUND"},
                "patch": {"operation": "MERGE", "value": {"connect_timeout": "1s"}},
            }
        ]
    },
    "PeerAuthentication": {"mtls": {"mode": "STRICT"}},
    "Telemetry": {
        "accessLogging": [{"providers": [{"name": "envoy"}]}],
        "tracing": [{"randomSamplingPercentage": 10.0}],
    },
    "AuthorizationPolicy": {
        "action": "ALLOW",
        "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/x/sa/y"]}}]}],
    },
    "RequestAuthentication": {"jwtRules": [{"issuer": "iss", "jwksUri": "https://example.com/jwks"}]},
}


def test_generated_crds_are_current() -> None:
    stale = list(crds._diff(CRD_DIR, crds.rendered()))
    assert not stale, f"{stale}: regenerate with python -m istiod_py.kube.crds --out deploy/crds"


def test_every_kind_has_a_crd_and_an_example() -> None:
    names = {c["spec"]["names"]["kind"] for c in crds.all_crds()}
    assert names == set(KINDS)
    assert set(EXAMPLES) == set(KINDS), "add an example spec for every new kind"


def test_every_kind_and_version_is_stored_and_loads(kube: KubeCluster) -> None:
    ns = kube.namespace("crd")
    created = []
    for kind, info in sorted(KINDS.items()):
        for version in info.versions:
            name = f"{kind.lower()}-{version}"
            out = kube.apply(
                {
                    "apiVersion": f"{info.group}/{version}",
                    "kind": kind,
                    "metadata": {"name": name, "namespace": ns},
                    "spec": EXAMPLES[kind],
                }
            )[0]
            # Stored intact: a field the schema did not declare would have been pruned.
            assert out["spec"] == EXAMPLES[kind], f"{kind} {version}: the API server changed the spec"
            created.append((kind, name))

    async def load() -> tuple[set[tuple[str, str]], list[str]]:
        src = KubeSource(kube.client, lambda snap: None)
        snap = await src.start()
        await src.stop()
        got = {(c.meta.kind, c.meta.name) for c in snap.configs if c.meta.namespace == ns}
        errs = [str(e) for e in snap.errors if f" {ns}/" in str(e)]
        return got, errs

    got, errors = asyncio.run(load())
    assert not errors
    assert got == set(created)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"hosts": ["a"], "http": [{"timeout": 5}]}, "spec.http[0].timeout"),
        ({"hosts": "a"}, "spec.hosts"),
        ({"hosts": ["a"], "tcp": [{"route": [{"destination": {"port": {"number": "x"}}}]}]}, "spec.tcp[0].route[0]"),
    ],
)
def test_schema_refuses_wrong_types_naming_the_field(kube: KubeCluster, spec: dict[str, Any], field: str) -> None:
    vs = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "bad", "namespace": "default"},
        "spec": spec,
    }
    with pytest.raises(KubeApiError) as err:
        kube.apply(vs)
    assert err.value.status == 422
    assert field in err.value.message


def test_enum_values_are_checked(kube: KubeCluster) -> None:
    pa = {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "bad", "namespace": "default"},
        "spec": {"mtls": {"mode": "STRICTER"}},
    }
    with pytest.raises(KubeApiError) as err:
        kube.apply(pa)
    assert "spec.mtls.mode" in err.value.message and "STRICT" in err.value.message
