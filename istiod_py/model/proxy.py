"""The proxy (Envoy) on the other end of an xDS stream, as its node describes it."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .service import EMPTY_LABELS


class ProxyType(enum.Enum):
    SIDECAR = "sidecar"
    ROUTER = "router"


class ProxyError(ValueError):
    """The node in a request cannot describe a proxy we can serve."""


@dataclass(frozen=True, slots=True)
class Proxy:
    type: ProxyType
    ip: str
    id: str  # NAME.NAMESPACE
    dns_domain: str
    namespace: str
    labels: Mapping[str, str] = field(default_factory=lambda: EMPTY_LABELS, compare=False, hash=False)
    service_account: str = "default"
    workload_name: str = ""
    interception_mode: str = "REDIRECT"
    cluster_id: str = ""
    node_id: str = ""
    metadata: Mapping[str, Any] = field(default_factory=lambda: EMPTY_LABELS, compare=False, hash=False)

    @property
    def name(self) -> str:
        return self.id.rsplit(".", 1)[0] if "." in self.id else self.id

    @property
    def labels_key(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(self.labels.items()))

    @property
    def capture_none(self) -> bool:
        return self.interception_mode.upper() == "NONE"


def node_id(proxy_type: str, ip: str, name: str, namespace: str, domain: str = "") -> str:
    domain = domain or f"{namespace}.svc.cluster.local"
    return f"{proxy_type}~{ip}~{name}.{namespace}~{domain}"


def parse_proxy(node_id_str: str, metadata: Mapping[str, Any]) -> Proxy:
    """Build a Proxy from an Envoy node id (`sidecar~IP~NAME.NS~NS.svc.cluster.local`)
    and its node metadata (Istio's NAMESPACE, LABELS, SERVICE_ACCOUNT, ...)."""
    parts = node_id_str.split("~")
    if len(parts) != 4:
        raise ProxyError(
            f"node id {node_id_str!r} is not TYPE~IP~NAME.NAMESPACE~DOMAIN "
            "(e.g. sidecar~127.0.0.11~reviews-v1.default~default.svc.cluster.local)"
        )
    kind, ip, pid, domain = parts
    try:
        ptype = ProxyType(kind)
    except ValueError:
        raise ProxyError(f"node id {node_id_str!r}: type {kind!r} is not 'sidecar' or 'router'") from None
    if not ip:
        raise ProxyError(f"node id {node_id_str!r}: empty IP")
    namespace = str(metadata.get("NAMESPACE") or "")
    if not namespace:
        namespace = pid.rsplit(".", 1)[1] if "." in pid else "default"
    raw_labels = metadata.get("LABELS") or {}
    if not isinstance(raw_labels, Mapping):
        raise ProxyError(f"node {node_id_str!r}: metadata LABELS must be a map of strings")
    labels = {str(k): str(v) for k, v in raw_labels.items()}
    return Proxy(
        type=ptype,
        ip=ip,
        id=pid,
        dns_domain=domain,
        namespace=namespace,
        labels=MappingProxyType(labels),
        service_account=str(metadata.get("SERVICE_ACCOUNT") or "default"),
        workload_name=str(metadata.get("WORKLOAD_NAME") or ""),
        interception_mode=str(metadata.get("INTERCEPTION_MODE") or "REDIRECT").upper(),
        cluster_id=str(metadata.get("CLUSTER_ID") or ""),
        node_id=node_id_str,
        metadata=MappingProxyType(dict(metadata)),
    )
