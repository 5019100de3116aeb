"""Every golden case both ways: its objects applied to the real API server, then
translated once from the Kubernetes source and once from the same objects as
files (read back from the API server, so the Services carry the ClusterIPs it
allocated). The xDS must be identical."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format

from istiod_py.config.loader import load_text
from istiod_py.config.model import KINDS
from istiod_py.kube import apply as kapply
from istiod_py.kube.convert import gateway_api_kinds, plural
from istiod_py.kube.source import KubeSource
from istiod_py.model import MeshConfig, parse_proxy
from istiod_py.registry.aggregate import Aggregator, SourceSnapshot
from istiod_py.translate.generate import Translator
from tests.golden.test_golden import CASES, SECTIONS, _name
from tests.support.kube import KubeCluster, wait

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def _namespaces(docs: list[dict[str, Any]]) -> set[str]:
    return {str((d.get("metadata") or {}).get("namespace") or "default") for d in docs}


def _read_back(kube: KubeCluster, namespaces: set[str]) -> str:
    """The objects the API server holds in `namespaces`, as one YAML file."""
    docs: list[dict[str, Any]] = []
    kinds = [("v1", "Service", "/api/v1"), ("discovery.k8s.io/v1", "EndpointSlice", "/apis/discovery.k8s.io/v1")]
    kinds += [(f"{i.group}/{i.versions[-1]}", k, f"/apis/{i.group}/{i.versions[-1]}") for k, i in KINDS.items()]
    kinds += [  # Gateway API: the newest version (the source reads the newest served)
        (f"{i.group}/{i.versions[0]}", i.kind, f"/apis/{i.group}/{i.versions[0]}")
        for i in gateway_api_kinds()
        if i.kind != "GatewayClass"
    ]
    for api_version, kind, base in kinds:
        for ns in sorted(namespaces):
            for item in kube.get(f"{base}/namespaces/{ns}/{plural(kind)}").get("items") or []:
                docs.append({"apiVersion": api_version, "kind": kind, **item})
    return yaml.safe_dump_all(json.loads(json.dumps(docs)))


def _translate(snap: SourceSnapshot, mesh: MeshConfig, proxies: list[dict[str, Any]]) -> dict[str, Any]:
    agg = Aggregator(mesh=mesh)
    agg.set_source("one", snap)
    state = agg.build()
    translator = Translator()
    out: dict[str, Any] = {}
    for p in proxies:
        proxy = parse_proxy(p["node_id"], p.get("metadata") or {})
        for section, type_url in SECTIONS:
            res = translator.generate(state, proxy, type_url)
            items = [
                json_format.MessageToDict(b.message(), preserving_proto_field_name=True) for b in res.index.values()
            ]
            out[f"{p['name']}/{section}"] = sorted(items, key=_name)
    return out


def _has_slice(kube: KubeCluster, ns: str, service: str) -> bool:
    items = kube.client.get(
        f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
        [("labelSelector", f"kubernetes.io/service-name={service}")],
    ).get("items")
    return bool(items)


def _only(snap: SourceSnapshot, namespaces: set[str]) -> SourceSnapshot:
    return SourceSnapshot(
        configs=tuple(c for c in snap.configs if c.meta.namespace in namespaces),
        services=tuple(s for s in snap.services if s.namespace in namespaces),
        endpoint_slices=tuple(s for s in snap.endpoint_slices if s.namespace in namespaces),
        errors=snap.errors,
    )


@pytest.mark.parametrize("case", CASES)
def test_same_xds_from_files_and_from_the_api_server(kube: KubeCluster, case: str) -> None:
    case_dir = GOLDEN / case
    docs = kapply.documents((case_dir / "input.yaml").read_text())
    namespaces = _namespaces(docs)
    for ns in namespaces:
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    mesh_file = case_dir / "mesh.yaml"
    mesh = MeshConfig.load(str(mesh_file)) if mesh_file.is_file() else MeshConfig()
    proxies = yaml.safe_load((case_dir / "proxies.yaml").read_text())
    try:
        kube.apply(*docs)
        selected = [d for d in docs if d["kind"] == "Service" and (d.get("spec") or {}).get("selector")]
        for d in selected:  # the controller-manager's (empty) slices, so both reads see the same ones
            ns, name = d["metadata"].get("namespace") or "default", d["metadata"]["name"]
            wait(lambda ns=ns, name=name: _has_slice(kube, ns, name), 20, f"EndpointSlice of {ns}/{name}")

        async def from_kube() -> SourceSnapshot:
            src = KubeSource(kube.client, lambda snap: None)
            snap = await src.start()
            await src.stop()
            return snap

        kube_snap = _only(asyncio.run(from_kube()), namespaces)
        files = load_text(_read_back(kube, namespaces), "read-back.yaml")
        assert [str(e) for e in files.errors] == []
        file_snap = SourceSnapshot(tuple(files.configs), tuple(files.services), tuple(files.endpoint_slices))
        assert [str(e) for e in kube_snap.errors if e.namespace in namespaces] == []
        assert len(kube_snap.configs) == len(file_snap.configs)
        assert len(kube_snap.services) == len(file_snap.services) > 0
        from_files = _translate(file_snap, mesh, proxies)
        from_api = _translate(kube_snap, mesh, proxies)
        assert any(from_files.values()), "the case translates to nothing: the comparison would be empty"
        assert from_api == from_files
    finally:
        for d in reversed(docs):
            kapply.delete(kube.client, d)
