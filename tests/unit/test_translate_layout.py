"""translate/ keeps its modules free of import cycles (docs/architecture.md,
"translate/ layout"): every import counts, including those inside functions
and under TYPE_CHECKING, since a cycle hidden in a function is still one."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "istiod_py" / "translate"
PREFIX = "istiod_py.translate"


def _modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = p.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join((PREFIX, *parts))] = p
    return out


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    deps: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            for alias in node.names:
                sub = f"{prefix}.{alias.name}"
                deps.add(sub if sub in known else prefix)
        elif isinstance(node, ast.Import):
            deps.update(a.name for a in node.names)
    return {d for d in deps if d in known and d != name}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        path.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return [*path[path.index(w) :], w]
            if w not in state:
                found = visit(w)
                if found:
                    return found
        path.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state:
            found = visit(v)
            if found:
                return found
    return None


def test_the_scan_sees_the_layout() -> None:
    known = _modules()
    graph = {n: _imports(n, p, known) for n, p in known.items()}
    assert f"{PREFIX}.gateway.generate" in graph[f"{PREFIX}.generate"]
    assert f"{PREFIX}.security.rbac_rules" in graph[f"{PREFIX}.security.rbac"]
    # A function-level import counts (rbac asks the sidecar listeners about inbound ports).
    assert f"{PREFIX}.sidecar.listeners" in graph[f"{PREFIX}.security.rbac"]


def test_a_cycle_is_found() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_in_translate() -> None:
    known = _modules()
    graph = {n: _imports(n, p, known) for n, p in known.items()}
    assert _cycle(graph) is None
