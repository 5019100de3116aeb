"""Prometheus metrics of the control plane, exposed as istiod exposes them.

istiod's counters carry no `_total` suffix (`pilot_xds_pushes{type="cds"}`), and
Istio's dashboards and alerts query those bare names; prometheus_client's Counter
always appends `_total`, so counters here are `BareCounter`s, which expose the
sample under the metric's own name with `# TYPE ... counter`.

Meanings follow istiod: `pilot_total_xds_internal_errors` counts failures to
generate config for a proxy, `pilot_total_rejected_configs` counts (per push, as
istiod's counter does) the config resources that had to be rejected,
`pilot_xds_expired_nonce` requests answering a nonce that is no longer current.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.core import Metric

from istiod_py.xds.types import TypeUrl

if TYPE_CHECKING:
    from istiod_py.xds.connection import PushRequest

# Why a push happened, in istiod's trigger names (pilot_push_triggers{type}).
TRIGGER_OF_REASON = {
    "config": "config",
    "endpoints": "endpoint",
    "dns-endpoints": "endpoint",
    "service-accounts": "endpoint",
    "services": "service",
}


def metric_type(type_url: str) -> str:
    """istiod's `type` label for an xDS type: cds, eds, lds, rds, sds."""
    return TypeUrl.SHORT.get(type_url, "other").lower()


class _Child:
    __slots__ = ("_counter", "_key")

    def __init__(self, counter: BareCounter, key: tuple[str, ...]) -> None:
        self._counter = counter
        self._key = key

    def inc(self, amount: float = 1.0) -> None:
        self._counter.add(self._key, amount)


class BareCounter:
    """A monotonically increasing counter exposed without a `_total` suffix."""

    def __init__(self, name: str, doc: str, labels: Sequence[str] = (), registry: CollectorRegistry | None = None):
        self.name = name
        self.doc = doc
        self.label_names = tuple(labels)
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()
        if not self.label_names:
            self._values[()] = 0.0
        if registry is not None:
            registry.register(self)

    def labels(self, *values: str) -> _Child:
        if len(values) != len(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {values}")
        return _Child(self, tuple(str(v) for v in values))

    def inc(self, amount: float = 1.0) -> None:
        self.add((), amount)

    def add(self, key: tuple[str, ...], amount: float) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, *labels: str) -> float:
        with self._lock:
            return self._values.get(tuple(labels), 0.0)

    def describe(self) -> Iterable[Metric]:
        return [Metric(self.name, self.doc, "counter")]

    def collect(self) -> Iterator[Metric]:
        m = Metric(self.name, self.doc, "counter")
        with self._lock:
            items = sorted(self._values.items())
        for key, v in items:
            m.add_sample(self.name, dict(zip(self.label_names, key, strict=True)), v)
        yield m


class XdsMetrics:
    def __init__(self, registry: CollectorRegistry | None = None, version: str = "") -> None:
        reg = registry if registry is not None else CollectorRegistry()
        self.registry = reg
        self.connections = Gauge("pilot_xds", "Connected xDS clients", ["transport"], registry=reg)
        self.pushes = BareCounter("pilot_xds_pushes", "xDS responses sent, by type", ["type"], registry=reg)
        self.rejects = BareCounter(
            "pilot_total_xds_rejects", "Total number of XDS responses from pilot rejected by proxy.", ["type"], reg
        )
        self.bytes_sent = BareCounter("pilot_xds_send_bytes", "Bytes of xDS responses sent", registry=reg)
        self.stream_errors = BareCounter(
            "pilot_xds_stream_errors", "Streams closed with an error", ["code"], registry=reg
        )
        self.convergence = Histogram(
            "pilot_proxy_convergence_time",
            "Delay in seconds between config change and a proxy receiving all required configuration.",
            buckets=(0.01, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30),
            registry=reg,
        )
        self.push_inflight = Gauge("pilot_xds_push_inflight", "Pushes being sent now", registry=reg)
        self.initial_push_inflight = Gauge(
            "pilot_xds_initial_push_inflight", "First responses to new streams being sent now", registry=reg
        )
        self.internal_errors = BareCounter(
            "pilot_total_xds_internal_errors", "Total number of internal XDS errors in pilot.", registry=reg
        )
        self.rejected_configs = BareCounter(
            "pilot_total_rejected_configs",
            "Total number of configs that Pilot had to reject or ignore.",
            ["type", "name"],
            registry=reg,
        )
        self.push_triggers = BareCounter(
            "pilot_push_triggers",
            "Total number of times a push was triggered, labeled by reason for the push.",
            ["type"],
            registry=reg,
        )
        self.expired_nonce = BareCounter(
            "pilot_xds_expired_nonce", "Total number of XDS requests with an expired nonce.", ["type"], registry=reg
        )
        self.push_time = Histogram(
            "pilot_xds_push_time",
            "Total time in seconds Pilot takes to push lds, rds, cds and eds.",
            ["type"],
            buckets=(0.01, 0.1, 0.5, 1, 3, 5, 10, 20, 30),
            registry=reg,
        )
        self.config_size = Histogram(
            "pilot_xds_config_size_bytes",
            "Distribution of configuration sizes pushed to clients",
            ["type"],
            buckets=(1, 10_000, 1_000_000, 4_000_000, 10_000_000, 40_000_000),
            registry=reg,
        )
        self.debounce_time = Histogram(
            "pilot_debounce_time",
            "Delay in seconds between the first config enters debouncing and the merged push request is pushed "
            "into the push queue.",
            buckets=(0.01, 0.1, 0.5, 1, 3, 5, 10, 20, 30),
            registry=reg,
        )
        self.proxy_queue_time = Histogram(
            "pilot_proxy_queue_time",
            "Time in seconds, a proxy is in the push queue before being dequeued.",
            buckets=(0.1, 0.5, 1, 3, 5, 10, 20, 30),
            registry=reg,
        )
        # Not an istiod metric: the event loop's CPU time in the translator (memo
        # hits included), so a benchmark can split a push's or a connect's server
        # CPU into translation and everything else (gRPC, the stream code).
        self.generate_cpu = BareCounter(
            "istiod_py_xds_generate_cpu_seconds",
            "CPU seconds (thread time) spent generating xDS resources for proxies, by type",
            ["type"],
            registry=reg,
        )
        self.services = Gauge("pilot_services", "Total services known to pilot.", registry=reg)
        self.virt_services = Gauge("pilot_virt_services", "Total virtual services known to pilot.", registry=reg)
        self.info = Gauge("pilot_info", "Pilot version and build information.", ["version"], registry=reg)
        self.info.labels(version or _version()).set(1)
        # Set by the server: the config resources rejected at load in the current state.
        self.rejected_source: Callable[[], Iterable[Any]] = lambda: ()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, looked up once: the per-message metrics (bytes
        and sizes per type, push times, ACK bookkeeping) would otherwise take the
        client library's lock and build a label tuple on every response."""
        key = (id(metric), labels)
        hit = self._children.get(key)
        if hit is None:
            hit = self._children[key] = metric.labels(*labels)
        return hit

    def observe_push(self, req: PushRequest) -> None:
        """A merged push request leaves the debouncer for the push queue."""
        self.debounce_time.observe(max(0.0, time.monotonic() - req.start))
        for reason in req.reason.split(",") if req.reason else ("unknown",):
            self.push_triggers.labels(TRIGGER_OF_REASON.get(reason, reason)).inc()
        self.services.set(len(req.state.services))
        self.virt_services.set(len(req.state.of_kind("VirtualService")))
        if req.full:
            # istiod re-records every rejected config each time it builds a push context.
            for err in self.rejected_source():
                kind = str(getattr(err, "kind", "") or "unknown").lower()
                name = str(getattr(err, "name", "") or getattr(err, "source", ""))
                ns = str(getattr(err, "namespace", "") or "")
                self.rejected_configs.labels(kind, f"{ns}/{name}" if ns and name else name).inc()


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("istiod_py")
    except Exception:  # not installed as a distribution (running from a source tree)
        return "unknown"
