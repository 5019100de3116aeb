"""IST0130 VirtualServiceUnreachableRule and IST0131 VirtualServiceIneffectiveMatch:
rules and matches of one VirtualService that can never be used, by Istio's rule
(pkg/config/validation analyzeUnreachable*Rules): a second rule without matches;
a rule after one without matches; a match identical to an earlier one; a rule all
of whose matches are earlier ones. Matches are compared by their JSON, as Istio does."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from google.protobuf import json_format

from istiod_py.config.analyzers.context import Context
from istiod_py.config.analyzers.messages import Message, new


def _name(rule: Any, n: int) -> str:
    name = getattr(rule, "name", "")
    return json.dumps(name) if name else f"#{n}"


def _rules(cfg: Any, kind: str, rules: Sequence[Any]) -> Iterator[Message]:
    seen: dict[str, int] = {}
    empty_at = -1
    for n, rule in enumerate(rules):
        path = f"spec.{kind}[{n}]"
        if not rule.match:
            if empty_at >= 0:
                yield new("IST0130", cfg, _name(rule, n), "only the last rule can have no matches", field=path)
            empty_at = n
            continue
        dups = 0
        for m, match in enumerate(rule.match):
            if empty_at >= 0:
                yield new("IST0130", cfg, _name(rule, n), "route without matches defined before", field=path)
                continue
            key = json.dumps(json_format.MessageToDict(match), sort_keys=True)
            if key in seen:
                d = seen[key]
                mname = json.dumps(match.name) if getattr(match, "name", "") else f"#{m}"
                yield new("IST0131", cfg, _name(rule, n), mname, _name(rules[d], d), field=f"{path}.match[{m}]")
                dups += 1
                continue
            seen[key] = n
        if dups == len(rule.match):
            yield new("IST0130", cfg, _name(rule, n), "all matches used by prior rules", field=path)


def analyze(ctx: Context) -> Iterator[Message]:
    for vs in ctx.of("VirtualService"):
        spec: Any = vs.spec
        yield from _rules(vs, "http", spec.http)
        yield from _rules(vs, "tcp", spec.tcp)
        yield from _rules(vs, "tls", spec.tls)
