"""Prometheus metrics of the xDS server, named like istiod's pilot_* metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class XdsMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = registry if registry is not None else CollectorRegistry()
        self.registry = reg
        self.connections = Gauge("pilot_xds", "Connected xDS clients", ["transport"], registry=reg)
        self.pushes = Counter("pilot_xds_pushes", "xDS responses sent, by type", ["type"], registry=reg)
        self.rejects = Counter("pilot_total_xds_rejects", "xDS responses NACKed by proxies", ["type"], registry=reg)
        self.bytes_sent = Counter("pilot_xds_send_bytes", "Bytes of xDS responses sent", registry=reg)
        self.stream_errors = Counter("pilot_xds_stream_errors", "Streams closed with an error", ["code"], registry=reg)
        self.convergence = Histogram(
            "pilot_proxy_convergence_time",
            "Seconds from a config event to its push to a proxy",
            buckets=(0.01, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30),
            registry=reg,
        )
        self.push_inflight = Gauge("pilot_xds_push_inflight", "Pushes being sent now", registry=reg)
        self.initial_push_inflight = Gauge(
            "pilot_xds_initial_push_inflight", "First responses to new streams being sent now", registry=reg
        )
        self.config_errors = Gauge("pilot_total_xds_internal_errors", "Config resources rejected at load", registry=reg)
