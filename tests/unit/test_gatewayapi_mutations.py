"""Bounded robustness of the Gateway API path: every field of every golden input,
deleted or replaced by a value of another type, must give either a clean load or
located errors, and the conversion must never raise (whatever the other documents say)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from istiod_py.config.gatewayapi.convert import convert
from istiod_py.config.loader import load_text

GOLDEN = Path(__file__).resolve().parents[1] / "golden_gatewayapi"
CASES = sorted(p for p in GOLDEN.iterdir() if (p / "input.yaml").is_file())
REPLACEMENTS: tuple[Any, ...] = (None, 7, "x", [], {}, -1)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


def _set(doc: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    out = copy.deepcopy(doc)
    node = out
    for p in path[:-1]:
        node = node[p]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


def _documents(case: Path) -> list[Any]:
    text = (case / "input.yaml").read_text()
    listed = case / "files.txt"
    if listed.is_file():
        root = GOLDEN.parents[1]
        text += "".join("\n---\n" + (root / name).read_text() for name in listed.read_text().split())
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_mutated_gateway_api_documents_never_crash(case: Path) -> None:
    docs = _documents(case)
    services = (GOLDEN / "services.yaml").read_text()
    checked = 0
    for i, doc in enumerate(docs):
        if not str(doc.get("apiVersion", "")).startswith("gateway.networking.k8s.io/"):
            continue
        base = load_text(services + "\n---\n" + yaml.safe_dump_all(docs[:i] + docs[i + 1 :]), "base.yaml")
        for n, path in enumerate(_paths(doc)):
            # Each field: deleted, and replaced by one value of another type (rotating over the types).
            for value in ("<delete>", REPLACEMENTS[n % len(REPLACEMENTS)]):
                mutated = _set(doc, path, value, value == "<delete>")
                result = load_text(yaml.safe_dump(mutated), "m.yaml")
                for e in result.errors:
                    assert e.source == "m.yaml" and e.message, e
                convert([*base.configs, *result.configs], [*base.services, *result.services])
                checked += 1
    assert checked > 0
