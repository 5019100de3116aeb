"""Virtual hosts shared across proxies (issue 18): the spliced RDS bytes are byte
for byte the deterministic serialization of the route configuration built whole,
and a virtual host every proxy sees is serialized once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from benchmarks import meshgen
from benchmarks.hetero import Mesh, proxies
from istiod_py.config.loader import load_text
from istiod_py.model import MeshConfig, MeshState, Proxy, ProxyType, parse_proxy
from istiod_py.registry.aggregate import Aggregator, SourceSnapshot
from istiod_py.translate.generate import Translator
from istiod_py.translate.sidecar import routes
from istiod_py.xds.types import TypeUrl

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "input.yaml").is_file())


def _golden(case: str) -> tuple[MeshState, list[Proxy]]:
    d = GOLDEN / case
    loaded = load_text((d / "input.yaml").read_text(), "input.yaml")
    mesh = MeshConfig.load(str(d / "mesh.yaml")) if (d / "mesh.yaml").is_file() else MeshConfig()
    agg = Aggregator(mesh=mesh)
    agg.set_source(
        "files", SourceSnapshot(tuple(loaded.configs), tuple(loaded.services), tuple(loaded.endpoint_slices))
    )
    pxs = [parse_proxy(p["node_id"], p.get("metadata") or {}) for p in yaml.safe_load((d / "proxies.yaml").read_text())]
    return agg.build(), [p for p in pxs if p.type == ProxyType.SIDECAR]


def _assert_same_bytes(state: MeshState, pxs: list[Proxy]) -> int:
    tr = Translator()
    checked = 0
    for proxy in pxs:
        ctx = tr.context(state)
        scope = ctx.sidecar_scope(proxy)
        res = tr.generate(state, proxy, TypeUrl.ROUTE)
        for name, built in res.index.items():
            if not name.isdigit():
                continue
            whole = routes.sidecar_route_config(ctx, proxy, scope, int(name))
            assert built.body == whole.SerializeToString(deterministic=True), (proxy.id, name)
            checked += 1
    return checked


@pytest.mark.parametrize("case", CASES)
def test_spliced_routes_equal_whole_serialization_golden(case: str) -> None:
    state, pxs = _golden(case)
    _assert_same_bytes(state, pxs)


def test_spliced_routes_equal_whole_serialization_hetero(tmp_path: Path) -> None:
    spec = meshgen.MeshSpec(services=120, endpoints=1, namespaces=12, virtual_services=6, hetero=True)
    state = Mesh(spec, meshgen.generate(spec, tmp_path), Aggregator()).load()
    assert _assert_same_bytes(state, proxies(24, 12)) >= 24


def test_virtual_host_serialized_once_for_every_proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = meshgen.MeshSpec(services=40, endpoints=1, namespaces=10, hetero=True)
    state = Mesh(spec, meshgen.generate(spec, tmp_path), Aggregator()).load()
    built: Counter[str] = Counter()
    vhost = routes._vhost

    def counting(*a: object) -> object:
        built[a[2].hostname] += 1  # type: ignore[attr-defined]
        return vhost(*a)  # type: ignore[arg-type]

    monkeypatch.setattr(routes, "_vhost", counting)
    tr = Translator()
    for p in proxies(10, 10):  # one proxy per namespace, ten different scopes, all import ns-0
        tr.generate(state, p, TypeUrl.ROUTE)
    # svc-10.ns-0 (HTTP, no VirtualService) is in every scope: one build for the nine
    # proxies outside ns-0, one for ns-0's own proxy (its bare-name domain).
    assert built["svc-10.ns-0.svc.cluster.local"] == 2
    # svc-0 has the benchmark's VirtualService: built per proxy (its matches may depend on it).
    assert built["svc-0.ns-0.svc.cluster.local"] == 10
