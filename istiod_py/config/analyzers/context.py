"""What every analyzer reads: the configs, the registry's services and endpoints,
and the workloads (WorkloadEntries and endpoint owners) that selectors can match."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from istiod_py.config.model import Config
from istiod_py.model.service import Endpoint, Service


@dataclass(frozen=True)
class Workload:
    name: str
    namespace: str
    labels: Mapping[str, str]


def fqdn(host: str, namespace: str, domain: str) -> str:
    """Short names resolve relative to the config's namespace, as Istio resolves them."""
    if "." in host or host.startswith("*"):
        return host
    return f"{host}.{namespace}.svc.{domain}"


def host_matches(pattern: str, host: str) -> bool:
    if pattern in ("*", host):
        return True
    return pattern.startswith("*") and host.endswith(pattern[1:])


def hosts_overlap(a: str, b: str) -> bool:
    return host_matches(a, b) or host_matches(b, a)


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def selector_string(selector: Mapping[str, str]) -> str:
    """Kubernetes' label selector String(): sorted `k=v` joined by commas."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def full_name(cfg: Config) -> str:
    return f"{cfg.meta.namespace}/{cfg.meta.name}"


@dataclass
class Context:
    configs: list[Config]
    services: Mapping[str, Service]
    endpoints: Mapping[str, tuple[Endpoint, ...]] = field(default_factory=dict)
    domain: str = "cluster.local"
    root_namespace: str = "istio-system"
    # Gateway API status (MeshState.gateway_api_status) for gateway_api_status.py.
    gateway_api_status: tuple[Any, ...] = ()

    @cached_property
    def by_kind(self) -> dict[str, list[Config]]:
        out: dict[str, list[Config]] = {}
        for c in self.configs:
            out.setdefault(c.meta.kind, []).append(c)
        return out

    def of(self, kind: str) -> list[Config]:
        return self.by_kind.get(kind, [])

    @cached_property
    def workloads(self) -> list[Workload]:
        seen: dict[tuple[str, str], Workload] = {}
        for we in self.of("WorkloadEntry"):
            spec: Any = we.spec
            seen[(we.meta.namespace, we.meta.name)] = Workload(we.meta.name, we.meta.namespace, dict(spec.labels))
        for eps in self.endpoints.values():
            for e in eps:
                name = e.workload_name or e.address
                seen.setdefault((e.namespace, name), Workload(name, e.namespace, dict(e.labels)))
        return list(seen.values())

    def service(self, host: str) -> Service | None:
        return self.services.get(host)
