"""YAML parsing with its cost bounded before anything is expanded.

A YAML document can be tiny and still expensive: aliases let 550 bytes stand
for a billion nodes (every later walk of the value expands them), and deep
nesting turns every recursive walk into a RecursionError. So a document is
composed into its node graph first (aliases are still shared nodes there), the
graph is measured — nodes after alias expansion, nesting depth, alias cycles —
and only a graph within the limits is constructed into Python values.

The limits, chosen so no real Istio or Kubernetes document comes near them
(README "Config files" documents them):

- `MAX_FILE_BYTES`: 4 MiB per file (Kubernetes itself caps an object at about
  1.5 MiB in etcd);
- `MAX_ALIAS_EXPANSION`: aliases may add at most 10,000 nodes to a document
  (go-yaml, which Kubernetes uses, refuses "excessive aliasing" the same way);
- `MAX_DEPTH`: 100 levels of nesting (an EnvoyFilter patch, the deepest thing
  in practice, stays under 30);
- `MAX_NUMBER_CHARS`: a number spelled with more than 64 characters fits no
  protobuf field, so it is refused before Python turns it into a huge integer.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_ALIAS_EXPANSION = 10_000
MAX_DEPTH = 100
MAX_NUMBER_CHARS = 64

_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"


class BoundsError(yaml.YAMLError):
    """The document is over one of the limits; `line` is 0-based within the document."""

    def __init__(self, problem: str, line: int | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.line = line


class _BoundedLoader(_Base):  # type: ignore[misc, valid-type]
    """SafeLoader whose constructors cannot raise anything but YAMLError: a value
    Python cannot represent (a 5,000-digit integer, the 13th month of a date)
    becomes a ConstructorError at the node's line."""

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        if node.tag in (_INT_TAG, _FLOAT_TAG) and len(str(node.value)) > MAX_NUMBER_CHARS:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"number with {len(str(node.value))} characters is out of range for any field "
                f"(at most {MAX_NUMBER_CHARS})",
                node.start_mark,
            )
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, OverflowError, ArithmeticError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read value: {_short(str(exc))}", node.start_mark
            ) from None


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _measure(root: Node) -> None:
    """Raise BoundsError if the graph under `root` is cyclic, deeper than MAX_DEPTH,
    or expands to more than MAX_ALIAS_EXPANSION nodes beyond its distinct ones.

    Iterative post-order walk; sizes are memoized per node, so a shared (aliased)
    node is walked once however often it is referenced: linear in distinct nodes."""
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _children(node)
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            height[key] = 1 + max((height[id(c)] for c in children), default=0)
            if height[key] > MAX_DEPTH:
                raise BoundsError(f"nesting deeper than {MAX_DEPTH} levels", node.start_mark.line)
            continue
        if key in size:
            continue
        if key in on_path:
            raise BoundsError(
                "an alias refers to a node that contains it (a recursive structure)", node.start_mark.line
            )
        on_path.add(key)
        stack.append((node, True))
        if len(on_path) > MAX_DEPTH:
            raise BoundsError(f"nesting deeper than {MAX_DEPTH} levels", node.start_mark.line)
        stack.extend((c, False) for c in children if id(c) not in size)
    expanded = size[id(root)]
    distinct = len(size)
    if expanded - distinct > MAX_ALIAS_EXPANSION:
        raise BoundsError(
            f"aliases expand this document to {expanded} nodes from {distinct}; at most "
            f"{MAX_ALIAS_EXPANSION} nodes may come from aliases: write the values out or split the document",
            root.start_mark.line,
        )


def _measure_tree(root: Node) -> None:
    """_measure for a document without anchors: no alias can share or close a loop,
    so only the depth needs checking (a cheap walk; loading 5,000 documents spent
    half its time in the full measure)."""
    stack: list[tuple[Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BoundsError(f"nesting deeper than {MAX_DEPTH} levels", node.start_mark.line)
        if isinstance(node, SequenceNode):
            stack.extend((c, depth + 1) for c in node.value)
        elif isinstance(node, MappingNode):
            stack.extend((c, depth + 1) for pair in node.value for c in pair)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def load_bounded(text: str) -> Any:
    """One YAML document to Python values, or YAMLError (BoundsError over a limit)."""
    if len(text) > MAX_FILE_BYTES:
        raise BoundsError(f"document larger than {MAX_FILE_BYTES} bytes")
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        # An alias needs an anchor ('&'); without one the node graph is a tree.
        (_measure if "&" in text else _measure_tree)(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()
