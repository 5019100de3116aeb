"""Per-proxy translation work follows what the proxy sees (issue 18).

These tests count work (services examined for a scope, clusters built, Sidecar
selectors tried), not time: a proxy whose Sidecar imports three namespaces does
the same work in a mesh with 1,000 more services elsewhere, and a cluster two
differently scoped proxies both see is built once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import meshgen
from benchmarks.hetero import Mesh, proxies
from istiod_py.model import MeshState
from istiod_py.model.proxy import Proxy
from istiod_py.registry.aggregate import Aggregator
from istiod_py.translate import clusters as cds
from istiod_py.translate import scope
from istiod_py.translate.generate import Translator
from istiod_py.xds.types import TypeUrl

TYPES = (TypeUrl.CLUSTER, TypeUrl.ENDPOINT, TypeUrl.LISTENER, TypeUrl.ROUTE)


def _unrelated(n: int) -> str:
    """n services in namespaces no Sidecar imports, each with a Sidecar of its own
    namespace (more Sidecars in the mesh, none of them the proxy's)."""
    docs = []
    for i in range(n):
        ns = f"other-{i % 50}"
        docs.append(f"""---
apiVersion: v1
kind: Service
metadata: {{name: extra-{i}, namespace: {ns}}}
spec:
  clusterIP: 172.30.{i >> 8}.{i & 0xFF}
  selector: {{app: extra-{i}}}
  ports: [{{name: http, port: 8080, targetPort: 8080}}]
""")
        if i < 50:
            docs.append(f"""---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: {ns}}}
spec:
  egress: [{{hosts: ["./*"]}}]
""")
    return "".join(docs)


def _state(tmp: Path, extra: int) -> MeshState:
    spec = meshgen.MeshSpec(services=200, endpoints=2, namespaces=20, hetero=True)
    root = meshgen.generate(spec, tmp)
    if extra:
        (tmp / "unrelated.yaml").write_text(_unrelated(extra), encoding="utf-8")
    return Mesh(spec, root, Aggregator()).load()


@pytest.fixture
def work(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    counts: Counter[str] = Counter()
    exported_to, outbound_cluster, labels_match = scope.exported_to, cds.outbound_cluster, scope.labels_match

    def count_exported(*a: object, **kw: object) -> bool:
        counts["services examined"] += 1
        return exported_to(*a, **kw)  # type: ignore[arg-type]

    def count_cluster(*a: object, **kw: object) -> object:
        counts["clusters built"] += 1
        return outbound_cluster(*a, **kw)  # type: ignore[arg-type]

    def count_labels(*a: object, **kw: object) -> bool:
        counts["sidecar selectors tried"] += 1
        return labels_match(*a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(scope, "exported_to", count_exported)
    monkeypatch.setattr(cds, "outbound_cluster", count_cluster)
    monkeypatch.setattr(scope, "labels_match", count_labels)
    yield counts


def _translate(tr: Translator, state: MeshState, proxy: Proxy) -> None:
    for ty in TYPES:
        tr.generate(state, proxy, ty)


def test_per_proxy_work_does_not_grow_with_unrelated_services(tmp_path: Path, work: Counter[str]) -> None:
    small = _state(tmp_path / "small", 0)
    big = _state(tmp_path / "big", 1000)
    assert len(big.services) == len(small.services) + 1000
    proxy = proxies(20, 20)[7]  # client-7 in ns-7: sees ns-7, ns-0 and ns-8
    tr = Translator()
    tr.context(small)  # the per-state indexes are built once per state, not per proxy
    _translate(tr, small, proxy)
    in_small = Counter(work)
    work.clear()
    tr = Translator()
    tr.context(big)
    _translate(tr, big, proxy)
    in_big = Counter(work)
    assert in_small["clusters built"] == 30  # 3 namespaces x 10 services, one port each
    # the 30 services of its scope, plus exportTo checks of the config it reads (the VirtualService)
    assert 30 <= in_small["services examined"] < 40
    assert in_big == in_small


def test_cluster_built_once_for_every_proxy_that_sees_it(tmp_path: Path, work: Counter[str]) -> None:
    state = _state(tmp_path, 0)
    pxs = proxies(20, 20)
    tr = Translator()
    _translate(tr, state, pxs[3])  # ns-3, ns-0, ns-4
    assert work["clusters built"] == 30
    _translate(tr, state, pxs[4])  # ns-4, ns-0, ns-5: only ns-5's ten are new
    assert work["clusters built"] == 40
    # The two proxies' scopes differ, yet they hold the very same serialized cluster.
    a = tr.generate(state, pxs[3], TypeUrl.CLUSTER)
    b = tr.generate(state, pxs[4], TypeUrl.CLUSTER)
    assert a is not b
    shared = [n for n in a.index if n in b.index and n.startswith("outbound|")]
    assert len(shared) == 20
    assert all(a.index[n] is b.index[n] for n in shared)


def test_all_proxies_translate_each_visible_cluster_once(tmp_path: Path, work: Counter[str]) -> None:
    state = _state(tmp_path, 0)
    tr = Translator()
    for p in proxies(200, 20):
        _translate(tr, state, p)
    assert work["clusters built"] == len(state.services)
