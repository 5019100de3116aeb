"""Which Telemetry applies to a proxy, and what it adds up to (Istio's override semantics).

Levels, most general first: the root namespace's Telemetry without a selector
(mesh-wide), the proxy namespace's Telemetry without a selector, then a Telemetry
in the proxy's namespace whose selector matches the proxy's labels. Where a level
has several candidates, istiod takes the oldest; file config has no creation
time, so the first by name is taken. `targetRef(s)` policies are not applied
(validation rejects them). Each feature merges the levels in order:

- accessLogging: a level's providers replace the inherited ones (empty means
  inherit); the last entry that names a provider decides it (disabled removes it,
  a filter applies to the providers in scope); no Telemetry logging at all falls
  back to meshConfig.accessLogFile, then to defaultProviders.accessLogging.
- metrics: providers as above; overrides accumulate in level order, so a
  namespace's `disabled` or tag override beats the mesh-wide one for its proxies.
- tracing: the most specific level with a tracing entry wins, inheriting the
  providers and sampling it leaves unset; custom tags merge, later levels winning.

Everything here is a frozen, hashable value: it is part of the listener cache key.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from istio.telemetry.v1alpha1 import telemetry_pb2 as tm

from istiod_py.config.model import Config
from istiod_py.model import Proxy

from ..context import PushContext
from .peer import app_of

CLIENT = "CLIENT"
SERVER = "SERVER"
_MODE_NAMES: dict[int, str] = {tm.CLIENT_AND_SERVER: "CLIENT_AND_SERVER", tm.CLIENT: CLIENT, tm.SERVER: SERVER}
_METRIC_NAMES = dict(tm.MetricSelector.IstioMetric.items())
ALL_METRICS = "ALL_METRICS"


@dataclass(frozen=True, slots=True)
class LogSpec:
    provider: str
    filter: str = ""  # a CEL expression, "" for none


@dataclass(frozen=True, slots=True)
class MetricOverride:
    metric: str  # an IstioMetric name or ALL_METRICS, or a custom metric name
    disabled: bool | None
    tags: tuple[tuple[str, str | None], ...]  # (tag, value) or (tag, None) to remove it


@dataclass(frozen=True, slots=True)
class MetricsSpec:
    providers: tuple[str, ...]
    overrides: tuple[MetricOverride, ...]


@dataclass(frozen=True, slots=True)
class CustomTag:
    kind: str  # literal, environment, header, formatter
    value: str  # the literal, variable, header name or format
    default: str = ""


@dataclass(frozen=True, slots=True)
class TracingSpec:
    providers: tuple[str, ...]
    sampling: float | None  # percent; None: the provider's / mesh default
    tags: tuple[tuple[str, CustomTag], ...]
    disable_span_reporting: bool
    use_request_id: bool


@dataclass(frozen=True, slots=True)
class TelemetryView:
    """What telemetry one proxy gets in one direction (mode CLIENT or SERVER)."""

    access_logs: tuple[LogSpec, ...]
    metrics: MetricsSpec
    tracing: TracingSpec | None
    # The tracer's service name (app.namespace, as istiod names it); "" when not tracing.
    service_name: str = ""
    # Views are parts of listener memo keys, hashed on every lookup: hashed once here.
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.access_logs, self.metrics, self.tracing, self.service_name)))

    def __hash__(self) -> int:
        return self._hash


def _matches(cfg: Config, labels: Any) -> bool:
    spec: Any = cfg.spec
    sel = spec.selector.match_labels
    return bool(sel) and all(labels.get(k) == v for k, v in sel.items())


def _targeted(cfg: Config) -> bool:
    spec: Any = cfg.spec
    return bool(spec.HasField("targetRef") or spec.targetRefs)


def levels(ctx: PushContext, proxy: Proxy) -> tuple[Config, ...]:
    """The Telemetry resources in effect for `proxy`, most general first."""
    root = ctx.state.mesh.root_namespace
    items = [c for c in ctx.state.of_kind("Telemetry") if not _targeted(c)]
    out: list[Config] = []
    for ns in dict.fromkeys((root, proxy.namespace)):
        plain = [c for c in items if c.meta.namespace == ns and not c.spec.HasField("selector")]
        if plain:
            out.append(plain[0])
    own = [c for c in items if c.meta.namespace == proxy.namespace and _matches(c, proxy.labels)]
    if own:
        out.append(own[0])
    return tuple(out)


def _mode_ok(mode: int, want: str) -> bool:
    return mode == tm.CLIENT_AND_SERVER or _MODE_NAMES[mode] == want


def _names(providers: Iterable[Any]) -> list[str]:
    return [p.name for p in providers]


def access_logs(ctx: PushContext, chosen: Sequence[Config], mode: str) -> tuple[LogSpec, ...]:
    entries = [e for c in chosen for e in c.spec.access_logging]  # type: ignore[attr-defined]
    telemetry = ctx.state.mesh.telemetry
    defaults = list(telemetry.default_providers.access_logging)
    if not entries:
        if telemetry.access_log_file:
            return (LogSpec(MESH_FILE_LOG),)
        return tuple(LogSpec(p) for p in sorted(defaults))
    in_scope = defaults
    filters: dict[str, str] = {}
    for e in entries:
        names = _names(e.providers)
        if names:
            in_scope = names
        if e.HasField("filter"):
            for p in in_scope:
                filters[p] = e.filter.expression
    chosen_providers: dict[str, LogSpec] = {}
    parent = defaults
    for e in entries:
        names = _names(e.providers) or parent
        parent = names
        for p in names:
            if p not in in_scope or not _mode_ok(e.match.mode, mode):
                continue
            if e.HasField("disabled") and e.disabled.value:
                chosen_providers.pop(p, None)
            else:
                chosen_providers[p] = LogSpec(p, filters.get(p, ""))
    return tuple(chosen_providers[p] for p in sorted(chosen_providers))


# The pseudo-provider of meshConfig.accessLogFile (no Telemetry logging anywhere).
MESH_FILE_LOG = "@mesh-access-log-file"


def metrics(ctx: PushContext, chosen: Sequence[Config], mode: str) -> MetricsSpec:
    providers = tuple(ctx.state.mesh.telemetry.default_providers.metrics)
    overrides: list[MetricOverride] = []
    for c in chosen:
        for m in c.spec.metrics:  # type: ignore[attr-defined]
            if m.providers:
                providers = tuple(_names(m.providers))
            for o in m.overrides:
                if not _mode_ok(o.match.mode, mode):
                    continue
                which = o.match.WhichOneof("metric_match")
                name = o.match.custom_metric if which == "custom_metric" else _METRIC_NAMES_BY_NUMBER[o.match.metric]
                tags = tuple(
                    (tag, None if op.operation == tm.MetricsOverrides.TagOverride.REMOVE else op.value)
                    for tag, op in sorted(o.tag_overrides.items())
                )
                disabled = o.disabled.value if o.HasField("disabled") else None
                overrides.append(MetricOverride(name, disabled, tags))
    return MetricsSpec(providers, tuple(overrides))


_METRIC_NAMES_BY_NUMBER = {v: k for k, v in _METRIC_NAMES.items()}


def tracing(ctx: PushContext, chosen: Sequence[Config], mode: str) -> TracingSpec | None:
    telemetry = ctx.state.mesh.telemetry
    providers = tuple(telemetry.default_providers.tracing)
    sampling: float | None = None
    tags: dict[str, CustomTag] = {}
    disable = False
    use_request_id = True
    seen = False
    for c in chosen:
        for t in c.spec.tracing:  # type: ignore[attr-defined]
            if not _mode_ok(t.match.mode, mode):
                continue
            seen = True
            if t.providers:
                providers = tuple(_names(t.providers))
            if t.HasField("random_sampling_percentage"):
                sampling = t.random_sampling_percentage.value
            if t.HasField("disable_span_reporting"):
                disable = t.disable_span_reporting.value
            if t.HasField("use_request_id_for_trace_sampling"):
                use_request_id = t.use_request_id_for_trace_sampling.value
            for name, tag in t.custom_tags.items():
                tags[name] = custom_tag(tag)
    if not providers and not seen:
        return None
    return TracingSpec(providers, sampling, tuple(sorted(tags.items())), disable, use_request_id)


def custom_tag(tag: Any) -> CustomTag:
    """A Telemetry or ProxyConfig custom tag (they share the literal/environment/header shape)."""
    kind = tag.WhichOneof("type")
    if kind == "literal":
        return CustomTag("literal", tag.literal.value)
    if kind == "environment":
        return CustomTag("environment", tag.environment.name, tag.environment.default_value)
    if kind == "header":
        return CustomTag("header", tag.header.name, tag.header.default_value)
    return CustomTag("formatter", tag.formatter.value)


def view(ctx: PushContext, proxy: Proxy, mode: str) -> TelemetryView:
    """Memoized per (namespace, labels, mode): proxies of one workload share it."""

    def build() -> TelemetryView:
        chosen = levels(ctx, proxy)
        # What a view holds depends on the proxy only through the Telemetry
        # resources in effect (and the service name when tracing): workloads with
        # the same levels share the work and the view object.
        ids = tuple((c.meta.namespace, c.meta.name) for c in chosen)

        def specs() -> tuple[tuple[LogSpec, ...], MetricsSpec, TracingSpec | None]:
            return access_logs(ctx, chosen, mode), metrics(ctx, chosen, mode), tracing(ctx, chosen, mode)

        logs, metric, trace = ctx.cached(("telemetry-of", ids, mode), specs)
        service = f"{app_of(proxy.labels)}.{proxy.namespace}" if trace is not None else ""
        return ctx.cached(("telemetry-view", ids, mode, service), lambda: TelemetryView(logs, metric, trace, service))

    return ctx.cached(("telemetry", proxy.namespace, proxy.labels_key, mode), build)


def cache_key(ctx: PushContext, proxy: Proxy) -> tuple[TelemetryView, TelemetryView]:
    """What listeners built for `proxy` depend on: part of their memo keys."""
    return (view(ctx, proxy, CLIENT), view(ctx, proxy, SERVER))
