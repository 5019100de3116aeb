"""Prometheus text exposition with istiod's counter names.

prometheus_client's text format renames every counter family to `<name>_total`
(`# TYPE pilot_xds_pushes_total counter`), but istiod exposes `pilot_xds_pushes`
and its dashboards query that name. Counters whose samples carry the family's
own name (xds/metrics.py `BareCounter`, the CA's counters) are written here as
istiod writes them; every other family goes through prometheus_client unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.utils import floatToGoString


class _One:
    """A collector of one already-collected family, for generate_latest."""

    def __init__(self, metric: Metric) -> None:
        self.metric = metric

    def collect(self) -> Iterator[Metric]:
        yield self.metric


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _bare_counter(metric: Metric) -> bytes:
    doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
    lines = [f"# HELP {metric.name} {doc}\n", f"# TYPE {metric.name} counter\n"]
    for s in metric.samples:
        labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(s.labels.items()))
        lines.append(
            f"{s.name}{{{labels}}} {floatToGoString(s.value)}\n" if labels else f"{s.name} {floatToGoString(s.value)}\n"
        )
    return "".join(lines).encode()


def render(registries: Iterable[CollectorRegistry]) -> bytes:
    out: list[bytes] = []
    for registry in registries:
        for metric in registry.collect():
            if metric.type == "counter" and all(s.name == metric.name for s in metric.samples):
                out.append(_bare_counter(metric))
            else:
                out.append(generate_latest(_One(metric)))
    return b"".join(out)
