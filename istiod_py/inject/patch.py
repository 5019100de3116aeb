"""RFC 6902 JSONPatch from the pod as received to the injected pod. Like
Istio's (a diff of the two documents), but at the granularity of the top-level
members of `metadata` and `spec`: each changed member is written whole with
`add` (which replaces an existing member), so the patch never depends on list
indices the API server might have shifted."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _pointer(*parts: str) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def create_patch(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict[str, Any]]:
    ops: list[dict[str, Any]] = []
    for section in ("metadata", "spec"):
        old = before.get(section) or {}
        new = after.get(section) or {}
        if section not in before and new:
            ops.append({"op": "add", "path": _pointer(section), "value": new})
            continue
        for key in new:
            if old.get(key) != new[key]:
                ops.append({"op": "add", "path": _pointer(section, key), "value": new[key]})
        for key in old:
            if key not in new:
                ops.append({"op": "remove", "path": _pointer(section, key)})
    return ops
