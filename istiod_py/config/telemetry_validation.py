"""Semantic validation of Telemetry (telemetry.istio.io), as Istio's webhook does it.

The access log filter is a CEL expression that Envoy compiles; a bad one would
make Envoy reject the whole listener, so it is parsed here (cel-python's parser,
the same grammar as cel-go's that istiod uses) and rejected at load.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from istio.telemetry.v1alpha1 import telemetry_pb2 as tm_pb

from istiod_py.config.proto_yaml import FieldProblem

Problems = list[FieldProblem]
_UPSERT = tm_pb.MetricsOverrides.TagOverride.UPSERT
_REMOVE = tm_pb.MetricsOverrides.TagOverride.REMOVE


@lru_cache(maxsize=256)
def cel_error(expression: str) -> str | None:
    """The CEL parse error of `expression`, or None when it parses."""
    import celpy  # deferred: only Telemetry filters need it

    try:
        celpy.Environment().compile(expression)
    except Exception as exc:  # celpy raises its parser's own error types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return first
    return None


def _providers(providers: Any, path: str, out: Problems) -> None:
    for i, p in enumerate(providers):
        if not p.name:
            out.append(FieldProblem(f"{path}.providers[{i}].name", "a provider name is required"))


NOT_YET = "not supported by istiod_py yet"


def _unsupported(t: tm_pb.Telemetry, out: Problems) -> None:
    """Fields the translator does not implement: rejected by name, never ignored."""
    if t.HasField("targetRef") or t.targetRefs:
        field = "spec.targetRef" if t.HasField("targetRef") else "spec.targetRefs"
        out.append(FieldProblem(field, f"{NOT_YET} (policy attachment); select workloads with spec.selector"))
    for i, tr in enumerate(t.tracing):
        if tr.HasField("disable_context_propagation"):
            out.append(FieldProblem(f"spec.tracing[{i}].disableContextPropagation", f"{NOT_YET}; remove it"))
        if tr.HasField("enable_istio_tags") and tr.enable_istio_tags.value:
            out.append(FieldProblem(f"spec.tracing[{i}].enableIstioTags", f"{NOT_YET} (istio.* span tags); remove it"))
    for i, m in enumerate(t.metrics):
        if m.HasField("reporting_interval"):
            out.append(
                FieldProblem(
                    f"spec.metrics[{i}].reportingInterval",
                    f"{NOT_YET} (TCP metrics are reported when a connection ends); remove it",
                )
            )


def validate_telemetry(t: tm_pb.Telemetry) -> Problems:
    out: Problems = []
    _unsupported(t, out)
    if t.HasField("selector") and (t.HasField("targetRef") or t.targetRefs):
        out.append(FieldProblem("spec.selector", "set either selector or targetRef(s), not both"))
    if t.HasField("targetRef") and t.targetRefs:
        out.append(FieldProblem("spec.targetRefs", "set either targetRef or targetRefs, not both"))
    for key in t.selector.match_labels:
        if not key:
            out.append(FieldProblem("spec.selector.matchLabels", "label keys must not be empty"))
    for i, tr in enumerate(t.tracing):
        path = f"spec.tracing[{i}]"
        _providers(tr.providers, path, out)
        if tr.HasField("random_sampling_percentage"):
            pct = tr.random_sampling_percentage.value
            if not 0.0 <= pct <= 100.0:
                out.append(FieldProblem(f"{path}.randomSamplingPercentage", f"{pct} is not between 0 and 100"))
        for name, tag in tr.custom_tags.items():
            if not name:
                out.append(FieldProblem(f"{path}.customTags", "tag names must not be empty"))
            if tag.WhichOneof("type") is None:
                out.append(
                    FieldProblem(f"{path}.customTags.{name}", "set one of literal, environment, header or formatter")
                )
    if len(t.tracing) > 1:
        out.append(FieldProblem("spec.tracing", "only one tracing entry is supported (as in Istio)"))
    for i, m in enumerate(t.metrics):
        path = f"spec.metrics[{i}]"
        _providers(m.providers, path, out)
        for j, o in enumerate(m.overrides):
            for tag_name, op in o.tag_overrides.items():
                where = f"{path}.overrides[{j}].tagOverrides.{tag_name}"
                if not tag_name:
                    out.append(FieldProblem(f"{path}.overrides[{j}].tagOverrides", "tag names must not be empty"))
                if op.operation == _UPSERT and not op.value:
                    out.append(FieldProblem(f"{where}.value", "a value is required when operation is UPSERT"))
                if op.operation == _REMOVE and op.value:
                    out.append(FieldProblem(f"{where}.value", "a value must not be set when operation is REMOVE"))
    for i, a in enumerate(t.access_logging):
        path = f"spec.accessLogging[{i}]"
        _providers(a.providers, path, out)
        if a.filter.expression:
            err = cel_error(a.filter.expression)
            if err is not None:
                out.append(FieldProblem(f"{path}.filter.expression", f"not a valid CEL expression: {err}"))
    return out
