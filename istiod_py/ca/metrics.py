"""Citadel-compatible CA metrics.

Istio exposes these counters without a `_total` suffix (dashboards and alerts query e.g.
`citadel_server_csr_count`); prometheus_client's Counter would append `_total`, so a small
collector emits them under Istio's exact names.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric

COUNTERS: dict[str, str] = {
    "citadel_server_csr_count": "The number of CSRs received by Citadel server.",
    "citadel_server_success_cert_issuance_count": "The number of certificates issuances that have succeeded.",
    "citadel_server_authentication_failure_count": "The number of authentication failures.",
    "citadel_server_csr_parsing_err_count": "The number of errors occurred when parsing the CSR.",
    "citadel_server_id_extraction_err_count": ("The number of errors occurred when extracting the ID from CSR."),
    "citadel_server_csr_sign_err_count": "The number of errors occurred when signing the CSR.",
}
ROOT_EXPIRY = "citadel_server_root_cert_expiry_timestamp"
CERT_CHAIN_EXPIRY = "citadel_server_cert_chain_expiry_timestamp"


class CAMetrics:
    """Counters and expiry gauges; also the prometheus collector that exposes them."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(COUNTERS, 0.0)
        self.root_cert_expiry: float = 0.0
        self.cert_chain_expiry: float = 0.0
        if registry is not None:
            registry.register(self)

    def inc(self, name: str, amount: float = 1.0) -> None:
        with self._lock:
            self._counts[name] += amount

    def value(self, name: str) -> float:
        with self._lock:
            return self._counts[name]

    def csr(self) -> None:
        self.inc("citadel_server_csr_count")

    def success(self) -> None:
        self.inc("citadel_server_success_cert_issuance_count")

    def auth_failure(self) -> None:
        self.inc("citadel_server_authentication_failure_count")

    def csr_parsing_error(self) -> None:
        self.inc("citadel_server_csr_parsing_err_count")

    def id_extraction_error(self) -> None:
        self.inc("citadel_server_id_extraction_err_count")

    def sign_error(self) -> None:
        self.inc("citadel_server_csr_sign_err_count")

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts = dict(self._counts)
        for name, doc in COUNTERS.items():
            m = Metric(name, doc, "counter")
            m.add_sample(name, {}, counts[name])
            yield m
        yield GaugeMetricFamily(
            ROOT_EXPIRY,
            "The unix timestamp, in seconds, when Citadel root cert will expire.",
            value=self.root_cert_expiry,
        )
        yield GaugeMetricFamily(
            CERT_CHAIN_EXPIRY,
            "The unix timestamp, in seconds, when Citadel cert chain will expire.",
            value=self.cert_chain_expiry,
        )
