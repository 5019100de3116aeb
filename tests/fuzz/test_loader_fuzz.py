"""Fuzzing the config loader with mutated real samples: it must be total.

Every input — byte flips, truncations, extreme values, swapped types, deep
nesting, alias bombs, built from deploy/samples/**.yaml — must come back as a
LoadResult whose problems are ConfigErrors with bounded text, in bounded time
and memory, and whose accepted configs serialize. Nothing may raise.

The default profile keeps the whole module well under a minute;
`HYPOTHESIS_PROFILE=long` runs many more examples.
"""

from __future__ import annotations

import math
import os
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from istiod_py.config.loader import LoadResult, load_bytes, load_text
from istiod_py.config.model import Config, ConfigError

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted((ROOT / "deploy" / "samples").rglob("*.yaml"))
SAMPLE_BYTES = [p.read_bytes() for p in SAMPLES]
SAMPLE_DOCS = [d for p in SAMPLES for d in yaml.safe_load_all(p.read_text()) if isinstance(d, dict)]

settings.register_profile("ci", max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
settings.register_profile(
    "long", max_examples=5000, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

MAX_SECONDS = 10.0  # per example, on a loaded 2-core machine; a real run takes milliseconds
MAX_PEAK_BYTES = 64 * 1024 * 1024  # Python allocations while loading one example
MAX_ERROR_CHARS = 1500  # message (1000) + field (300) + location


def check_total(load: Callable[[], LoadResult]) -> LoadResult:
    """Run one load and assert the totality properties."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        result = load()  # must not raise, whatever the input
    finally:
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < MAX_SECONDS, f"loading took {elapsed:.1f}s"
    assert peak < MAX_PEAK_BYTES, f"loading allocated {peak / 1e6:.0f} MB at peak"
    for e in result.errors:
        assert isinstance(e, ConfigError)
        assert e.source, e
        assert len(str(e)) < MAX_ERROR_CHARS, f"{len(str(e))}-character error: {str(e)[:200]}"
    for c in result.configs:
        assert isinstance(c, Config)
        c.spec.SerializeToString()  # what the translator and the debug endpoints do with it
    return result


# --- byte-level mutations of sample files -------------------------------------------------


@st.composite
def mutated_bytes(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLE_BYTES)))
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "duplicate"]))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8) | st.sampled_from(INSERTS))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        else:
            end = min(len(data), at + draw(st.integers(1, 200)))
            data[at:at] = data[at:end]
    return bytes(data)


INSERTS = [b"&a ", b"*a", b"[", b"{", b"- ", b": ", b"\n---\n", b"\t", b"\xff\xfe", b"\x00", b"!!python/object "]


@given(mutated_bytes())
def test_mutated_bytes_load_totally(data: bytes) -> None:
    check_total(lambda: load_bytes(data, "fuzz.yaml"))


# --- structural mutations: extreme values, swapped types, deep nesting -----------------------

EXTREMES: list[Any] = [
    0,
    -1,
    2**31,
    -(2**31) - 1,
    2**32,
    2**63,
    2**64,
    10**40,
    1e308,
    -1e308,
    math.inf,
    -math.inf,
    math.nan,
    3.5e38,
    "",
    "x" * 5000,
    "\u0000",
    "\ud7ff\U0001f600",
    "99999999999999999h",
    "1e999",
    "-1s",
    "0s",
    "1ns",
    "0.0000000001s",
    "(?=a)b",
    "(a)\\1",
    "[",
    "10.0.0.0/33",
    "300.1.1.1/8",
    "not-an-ip",
    "::1/129",
    "*",
    "*.*.com",
    "a/b/c",
    None,
    True,
    [],
    {},
    [None],
    {"": None},
    {1: 2},
]


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths(v, (*prefix, i))
    return out


def replace(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A copy of node with the value at path replaced (unchanged if the path is gone)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(node, dict):
        return {k: replace(v, rest, value) if k == head else v for k, v in node.items()}
    if isinstance(node, list):
        return [replace(v, rest, value) if i == head else v for i, v in enumerate(node)]
    return node


def get(node: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        node = node[p]
    return node


PATHS = [paths(d) for d in SAMPLE_DOCS]


def swap_type(value: Any) -> Any:
    if isinstance(value, bool):
        return "true"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return {"item": value}
    if isinstance(value, dict):
        return list(value.items())
    return 1


def nest(value: Any, depth: int, use_list: bool) -> Any:
    for _ in range(depth):
        value = [value] if use_list else {"n": value}
    return value


def nested_lists(depth: int, leaf: dict[str, Any]) -> dict[str, Any]:
    doc = leaf
    for _ in range(depth):
        doc = {"apiVersion": "v1", "kind": "List", "items": [doc]}
    return doc


def alias_bomb(width: int, depth: int) -> Any:
    """Shared references: yaml.dump writes them as anchors and aliases, so the text
    stays small while the expanded value has width**depth leaves."""
    node: Any = ["lol"] * width
    for _ in range(depth):
        node = [node] * width
    return node


@st.composite
def mutated_documents(draw: st.DrawFn) -> str:
    # Paths come from the original document: walking a mutated one could mean
    # expanding the alias bomb just put in it.
    which = draw(st.integers(0, len(SAMPLE_DOCS) - 1))
    original = doc = SAMPLE_DOCS[which]
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(PATHS[which]))
        op = draw(st.sampled_from(["extreme", "swap", "nest", "alias", "list", "integer", "text"]))
        old = get(original, where)
        if op == "extreme":
            new = draw(st.sampled_from(EXTREMES))
        elif op == "swap":
            new = swap_type(old)
        elif op == "nest":
            new = nest(old, draw(st.integers(50, 400)), draw(st.booleans()))
        elif op == "alias":
            new = alias_bomb(draw(st.integers(2, 12)), draw(st.integers(1, 9)))
        elif op == "list":
            new = nested_lists(draw(st.integers(1, 600)), doc)
        elif op == "integer":
            new = draw(st.integers(-(2**70), 2**70) | st.integers(-1, 70_000))
        else:
            new = draw(st.text(max_size=40))
        doc = replace(doc, where, new)
    try:
        return yaml.dump(doc, Dumper=yaml.SafeDumper, allow_unicode=True)
    except (yaml.YAMLError, RecursionError):
        return "{" * 5000  # what the dumper cannot write is still text the loader must survive


@given(mutated_documents())
def test_mutated_documents_load_totally(text: str) -> None:
    check_total(lambda: load_text(text, "fuzz.yaml"))


@given(st.sampled_from(SAMPLE_DOCS), st.integers(2, 16), st.integers(3, 12))
def test_alias_bombs_are_refused_cheaply(doc: dict[str, Any], width: int, depth: int) -> None:
    text = yaml.dump({**doc, "spec": {"bomb": alias_bomb(width, depth)}}, Dumper=yaml.SafeDumper)
    result = check_total(lambda: load_text(text, "bomb.yaml"))
    expanded = width ** (depth + 1)
    if expanded > 20_000:
        assert any("aliases expand" in e.message for e in result.errors), result.errors


def test_samples_still_load_without_errors() -> None:
    for path, data in zip(SAMPLES, SAMPLE_BYTES, strict=True):
        result = check_total(lambda data=data, path=path: load_bytes(data, str(path)))  # type: ignore[misc]
        assert not result.errors, [str(e) for e in result.errors]
