"""IST0110 ConflictingSidecarWorkloadSelectors and IST0111
MultipleSidecarsWithoutWorkloadSelectors, as Istio's sidecar selector analyzer:
a workload that two Sidecars of its namespace select, and a namespace with more
than one Sidecar without a selector (istiod would pick one, arbitrarily)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from istiod_py.config.analyzers.context import Context, full_name, selects
from istiod_py.config.analyzers.messages import Message, go_list, new


def _selector(sc: Any) -> dict[str, str]:
    spec: Any = sc.spec
    return dict(spec.workload_selector.labels) if spec.HasField("workload_selector") else {}


def analyze(ctx: Context) -> Iterator[Message]:
    no_selector: dict[str, list[Any]] = {}
    with_selector: dict[str, list[Any]] = {}
    for sc in ctx.of("Sidecar"):
        (with_selector if _selector(sc) else no_selector).setdefault(sc.meta.namespace, []).append(sc)
    for ns, scs in sorted(no_selector.items()):
        if len(scs) > 1:
            names = go_list(full_name(s) for s in scs)
            for sc in scs:
                yield new("IST0111", sc, names, ns)
    reported: set[tuple[str, str]] = set()
    for w in sorted(ctx.workloads, key=lambda w: (w.namespace, w.name)):
        scs = [s for s in with_selector.get(w.namespace, []) if selects(_selector(s), w.labels)]
        if len(scs) < 2:
            continue
        names = go_list(full_name(s) for s in scs)
        for sc in scs:
            if (full_name(sc), names) not in reported:
                reported.add((full_name(sc), names))
                yield new("IST0110", sc, names, w.namespace, w.name, field="spec.workloadSelector")
