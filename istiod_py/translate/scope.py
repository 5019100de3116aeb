"""What a proxy may see: Sidecar egress hosts and exportTo, as Istio scopes them."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from istiod_py.config.model import Config
from istiod_py.model import MeshState, Proxy, Service, labels_match


def exported_to(export_to: Iterable[str], owner_ns: str, viewer_ns: str) -> bool:
    """Istio's exportTo: empty or "*" is public, "." is the owner's namespace, "~" none."""
    targets = list(export_to)
    if not targets:
        return True
    return any(t == "*" or (t == "." and viewer_ns == owner_ns) or t == viewer_ns for t in targets)


def host_matches(pattern: str, host: str) -> bool:
    """Istio host wildcards: `*` matches all, `*.foo.com` a suffix; else exact."""
    if pattern == "*" or pattern == host:
        return True
    if pattern.startswith("*"):
        return host.endswith(pattern[1:])
    return False


def hosts_overlap(a: str, b: str) -> bool:
    return host_matches(a, b) or host_matches(b, a)


def sidecar_for(state: MeshState, proxy: Proxy) -> Config | None:
    """The Sidecar resource that applies to a proxy: one whose workloadSelector
    matches it in its namespace, else the namespace's selector-less one, else the
    root namespace's selector-less one (mesh default)."""
    ns_default: Config | None = None
    root_default: Config | None = None
    for cfg in state.of_kind("Sidecar"):
        spec: Any = cfg.spec
        has_selector = spec.HasField("workload_selector") and bool(spec.workload_selector.labels)
        if cfg.meta.namespace == proxy.namespace:
            if has_selector:
                if labels_match(dict(spec.workload_selector.labels), proxy.labels):
                    return cfg
            elif ns_default is None:
                ns_default = cfg
        elif cfg.meta.namespace == state.mesh.root_namespace and not has_selector and root_default is None:
            root_default = cfg
    return ns_default or root_default


@dataclass(frozen=True, slots=True)
class EgressHosts:
    """Parsed `ns/host` entries of a Sidecar egress listener."""

    entries: tuple[tuple[str, str], ...]

    @staticmethod
    def parse(hosts: Sequence[str], sidecar_ns: str) -> EgressHosts:
        out = []
        for h in hosts:
            ns, _, host = h.partition("/")
            if ns == ".":
                ns = sidecar_ns
            out.append((ns, host))
        return EgressHosts(tuple(out))

    def allows(self, namespace: str, hostname: str) -> bool:
        for ns, host in self.entries:
            if ns not in ("*", namespace) and ns != "~":
                continue
            if ns == "~":
                continue
            if host == "*" or fnmatch.fnmatchcase(hostname, host) or host_matches(host, hostname):
                return True
        return False


ALL_HOSTS = EgressHosts((("*", "*"),))


def visible_services(state: MeshState, proxy: Proxy, egress: EgressHosts = ALL_HOSTS) -> list[Service]:
    """Services a proxy can reach: exported to its namespace and allowed by its
    Sidecar egress hosts. Sorted by hostname for deterministic output."""
    out = [
        svc
        for svc in state.services.values()
        if exported_to(svc.export_to, svc.namespace, proxy.namespace) and egress.allows(svc.namespace, svc.hostname)
    ]
    out.sort(key=lambda s: s.hostname)
    return out


def config_visible(cfg: Config, viewer_ns: str) -> bool:
    spec: Any = cfg.spec
    export = list(getattr(spec, "export_to", []) or [])
    return exported_to(export, cfg.meta.namespace, viewer_ns)
