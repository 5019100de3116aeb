"""Kubernetes label selectors (matchLabels + matchExpressions), for the mesh
config's `discoverySelectors`: a namespace is discovered when any selector
matches its labels; with no selectors every namespace is."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_OPERATORS = frozenset({"In", "NotIn", "Exists", "DoesNotExist"})


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        return self.key not in labels or labels[self.key] not in self.values  # NotIn


@dataclass(frozen=True)
class LabelSelector:
    match_labels: tuple[tuple[str, str], ...]
    expressions: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels) and all(
            r.matches(labels) for r in self.expressions
        )


def parse_selectors(raw: Any, where: str) -> list[LabelSelector]:
    """Raises ValueError naming the field for a malformed selector."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError(f"{where}: discoverySelectors must be a list of label selectors")
    out = []
    for i, sel in enumerate(raw):
        path = f"{where}: discoverySelectors[{i}]"
        if not isinstance(sel, dict):
            raise ValueError(f"{path}: expected a label selector (matchLabels / matchExpressions)")
        unknown = set(sel) - {"matchLabels", "matchExpressions"}
        if unknown:
            raise ValueError(f"{path}: unknown field {sorted(unknown)[0]!r} (known: matchExpressions, matchLabels)")
        ml = sel.get("matchLabels") or {}
        if not isinstance(ml, dict):
            raise ValueError(f"{path}.matchLabels: expected a mapping of label to value")
        reqs = []
        for j, e in enumerate(sel.get("matchExpressions") or []):
            epath = f"{path}.matchExpressions[{j}]"
            if not isinstance(e, dict) or not e.get("key"):
                raise ValueError(f"{epath}: 'key' is required")
            op = e.get("operator")
            if op not in _OPERATORS:
                raise ValueError(f"{epath}.operator: {op!r} is not one of {', '.join(sorted(_OPERATORS))}")
            values = e.get("values") or []
            if op in ("In", "NotIn") and not values:
                raise ValueError(f"{epath}.values: required for operator {op}")
            reqs.append(Requirement(str(e["key"]), str(op), frozenset(str(v) for v in values)))
        out.append(LabelSelector(tuple(sorted((str(k), str(v)) for k, v in ml.items())), tuple(reqs)))
    return out


def namespace_selected(selectors: list[LabelSelector], labels: Mapping[str, str]) -> bool:
    return not selectors or any(s.matches(labels) for s in selectors)
