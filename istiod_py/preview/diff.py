"""A readable field-level diff of two xDS resources.

Both sides are rendered with `MessageToDict(preserving_proto_field_name=True)`;
lists whose items all carry a `name` are matched by name (virtual hosts, routes,
filter chains, weighted clusters), other lists by index, so a weight change
reads `virtual_hosts[reviews...:9080].routes[0].route.weighted_clusters.clusters[outbound|...].weight: 80 -> 70`.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

MAX_LINES = 40


def as_dict(msg: Message) -> dict[str, Any]:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def _short(v: Any) -> str:
    text = json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else json.dumps(v)
    return text if len(text) <= 120 else text[:117] + "..."


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(i, dict) and "name" in i for i in items)


def _walk(path: str, a: Any, b: Any, out: list[str]) -> None:
    if a == b:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            sub = f"{path}.{k}" if path else k
            if k not in a:
                out.append(f"+ {sub}: {_short(b[k])}")
            elif k not in b:
                out.append(f"- {sub}: {_short(a[k])}")
            else:
                _walk(sub, a[k], b[k], out)
        return
    if isinstance(a, list) and isinstance(b, list):
        if _named(a) and _named(b):
            left = {i["name"]: i for i in a}
            right = {i["name"]: i for i in b}
            for n in [*left, *(n for n in right if n not in left)]:
                sub = f"{path}[{n}]"
                if n not in right:
                    out.append(f"- {sub}")
                elif n not in left:
                    out.append(f"+ {sub}: {_short(right[n])}")
                else:
                    _walk(sub, left[n], right[n], out)
            if [i["name"] for i in a if i["name"] in right] != [i["name"] for i in b if i["name"] in left]:
                out.append(f"~ {path}: order {[i['name'] for i in a]} -> {[i['name'] for i in b]}")
            return
        for i in range(max(len(a), len(b))):
            sub = f"{path}[{i}]"
            if i >= len(a):
                out.append(f"+ {sub}: {_short(b[i])}")
            elif i >= len(b):
                out.append(f"- {sub}: {_short(a[i])}")
            else:
                _walk(sub, a[i], b[i], out)
        return
    out.append(f"~ {path}: {_short(a)} -> {_short(b)}")


def field_diff(old: Message, new: Message, limit: int = MAX_LINES) -> list[str]:
    out: list[str] = []
    _walk("", as_dict(old), as_dict(new), out)
    if len(out) > limit:
        out = [*out[:limit], f"... {len(out) - limit} more differences"]
    return out
