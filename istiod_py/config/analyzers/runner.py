"""Run every analyzer; drop suppressed messages; sort and de-duplicate as istioctl does.

Suppression, as istioctl analyze:
- `-S "CODE=Kind name"`: CODE (or `*`) on resources whose `Kind namespace/name` or
  `Kind name.namespace` matches the glob (`IST0101=VirtualService default/*`);
- the annotation `galley.istio.io/analyze-suppress: "IST0101,IST0130"` (or `*`) on a
  resource suppresses those codes for that resource."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from istiod_py.config.analyzers import (
    destination_rules,
    envoyfilter,
    gateway_api_status,
    gateways,
    jwt_routes,
    references,
    schema,
    service_entries,
    sidecars,
    unknown_annotations,
    vs_hosts,
    vs_rules,
)
from istiod_py.config.analyzers.context import Context
from istiod_py.config.analyzers.messages import LEVELS, Message
from istiod_py.config.model import ConfigError

ANALYZERS: tuple[Callable[[Context], Iterator[Message]], ...] = (
    references.analyze,
    unknown_annotations.analyze,
    vs_hosts.analyze,
    vs_rules.analyze,
    sidecars.analyze,
    destination_rules.analyze,
    service_entries.analyze,
    gateways.analyze,
    jwt_routes.analyze,
    envoyfilter.analyze,
    gateway_api_status.analyze,
)
SUPPRESS_ANNOTATION = "galley.istio.io/analyze-suppress"


class SuppressionError(ValueError):
    pass


@dataclass(frozen=True)
class Suppression:
    code: str
    resource: str

    @staticmethod
    def parse(text: str) -> Suppression:
        code, sep, resource = text.partition("=")
        if not sep or not code.strip() or not resource.strip():
            raise SuppressionError(
                f"suppression {text!r} is not CODE=KIND NAME (e.g. 'IST0101=VirtualService default/*')"
            )
        return Suppression(code.strip(), " ".join(resource.split()))

    def matches(self, m: Message) -> bool:
        if self.code != "*" and self.code != m.code:
            return False
        forms = [m.origin, f"{m.kind} {m.name}.{m.namespace}" if m.namespace else m.origin]
        return any(fnmatch.fnmatchcase(f, self.resource) for f in forms)


def run(
    ctx: Context,
    load_errors: Iterable[ConfigError] = (),
    suppressions: Sequence[Suppression] = (),
) -> list[Message]:
    found: list[Message] = list(schema.messages(load_errors))
    for analyzer in ANALYZERS:
        found.extend(analyzer(ctx))
    annotated: dict[tuple[str, str, str], set[str]] = {}
    for c in ctx.configs:
        value = c.meta.annotations.get(SUPPRESS_ANNOTATION)
        if value:
            annotated[(c.meta.kind, c.meta.namespace, c.meta.name)] = {v.strip() for v in value.split(",")}
    out: dict[str, Message] = {}
    for m in found:
        codes = annotated.get((m.kind, m.namespace, m.name), set())
        if m.code in codes or "*" in codes or any(s.matches(m) for s in suppressions):
            continue
        out.setdefault(str(m), m)
    rank = {lvl: i for i, lvl in enumerate(LEVELS)}
    return sorted(out.values(), key=lambda m: (rank.get(m.level, 9), m.origin, m.code, m.text))


def at_least(messages: Iterable[Message], threshold: str) -> list[Message]:
    """Messages at `threshold` level or more severe (Error > Warning > Info)."""
    limit = LEVELS.index(threshold)
    return [m for m in messages if m.level in LEVELS and LEVELS.index(m.level) <= limit]
