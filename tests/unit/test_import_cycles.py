"""No import cycles between istiod_py's modules.

Every `import` / `from ... import` statement counts, wherever it is: at module
level, inside a function (a deferred import only postpones the cycle to the first
call), and under `if TYPE_CHECKING:` (a type-only cycle is still two modules that
each need the other to be understood). An edge goes to the module named, or to the
submodule for `from pkg import submodule`; the implicit import of parent packages
(`import a.b.c` runs `a/__init__` and `a/b/__init__`) is not an edge, so a package
`__init__` that re-exports its submodules is not a cycle by itself."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import istiod_py

ROOT = Path(istiod_py.__file__).resolve().parent


def _modules() -> dict[str, tuple[Path, bool]]:
    out: dict[str, tuple[Path, bool]] = {}
    for f in ROOT.rglob("*.py"):
        parts = list(f.relative_to(ROOT.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (f, is_pkg)
    return out


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    # ast.walk reaches function bodies and TYPE_CHECKING blocks alike: all of them count.
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported istiod_py module: line of the first such import}."""
    mods = _modules()

    def known(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, dict[str, int]] = {}
    for mod, (path, is_pkg) in mods.items():
        edges = graph.setdefault(mod, {})
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    pkg = pkg[: len(pkg) - (node.level - 1)]
                    base = ".".join([*pkg, *([node.module] if node.module else [])])
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for t in targets:
                k = known(t)
                if k is not None and k != mod:
                    edges.setdefault(k, node.lineno)
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = []
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        work.append((start, iter(sorted(graph[start]))))
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, {})))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp: list[str] = []
                while True:
                    x = stack.pop()
                    on_stack.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def _describe(graph: dict[str, dict[str, int]], comp: list[str]) -> str:
    members = set(comp)
    lines = [f"  {a} -> {b} (line {line})" for a in comp for b, line in sorted(graph[a].items()) if b in members]
    return "cycle among " + ", ".join(comp) + ":\n" + "\n".join(lines)


def test_cycle_finder_finds_a_planted_cycle() -> None:
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}, "e": {}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b": 1}, "b": {}}) == []


def test_graph_sees_function_level_and_type_checking_imports() -> None:
    graph = import_graph()
    # cli/serve.py imports the server inside its handler; the edge must be there.
    assert "istiod_py.server" in graph["istiod_py.cli.serve"]
    # ca/runtime.py imports MeshConfig only under TYPE_CHECKING.
    assert "istiod_py.model" in graph["istiod_py.ca.runtime"]


def test_no_import_cycles() -> None:
    graph = import_graph()
    found = cycles(graph)
    assert not found, "\n".join(_describe(graph, c) for c in found)
