"""MeshStates straight from YAML text, for unit tests of the translator: one
place that loads the documents strictly (any error fails the test) and builds
the state the way the control plane does."""

from __future__ import annotations

from istiod_py.config.loader import LoadResult, load_text
from istiod_py.model import MeshConfig, MeshState
from istiod_py.registry.aggregate import Aggregator, SourceSnapshot


def load_docs(*docs: str) -> LoadResult:
    res = load_text("\n---\n".join(docs), "test.yaml")
    assert not res.errors, [str(e) for e in res.errors]
    return res


def mesh_state(*docs: str, mesh: MeshConfig | None = None) -> MeshState:
    res = load_docs(*docs)
    agg = Aggregator(mesh=mesh or MeshConfig())
    agg.set_source("files", SourceSnapshot(tuple(res.configs), tuple(res.services), tuple(res.endpoint_slices)))
    return agg.build()
