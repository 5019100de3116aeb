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


@dataclass(frozen=True, slots=True)
class SidecarIndex:
    """Sidecars by namespace, built once per state, so finding a proxy's Sidecar
    reads only its own namespace's (a scan of every Sidecar per proxy was most
    of a proxy's translation in a mesh with a Sidecar per namespace)."""

    selected: dict[str, tuple[tuple[dict[str, str], Config], ...]]  # ns -> (selector labels, Sidecar), in order
    defaults: dict[str, Config]  # ns -> first selector-less Sidecar

    @staticmethod
    def of(state: MeshState) -> SidecarIndex:
        selected: dict[str, list[tuple[dict[str, str], Config]]] = {}
        defaults: dict[str, Config] = {}
        for cfg in state.of_kind("Sidecar"):
            spec: Any = cfg.spec
            ns = cfg.meta.namespace
            if spec.HasField("workload_selector") and spec.workload_selector.labels:
                selected.setdefault(ns, []).append((dict(spec.workload_selector.labels), cfg))
            else:
                defaults.setdefault(ns, cfg)
        return SidecarIndex({ns: tuple(v) for ns, v in selected.items()}, defaults)


def sidecar_for(state: MeshState, proxy: Proxy, index: SidecarIndex | None = None) -> Config | None:
    """The Sidecar resource that applies to a proxy: one whose workloadSelector
    matches it in its namespace, else the namespace's selector-less one, else the
    root namespace's selector-less one (mesh default)."""
    idx = index or SidecarIndex.of(state)
    for labels, cfg in idx.selected.get(proxy.namespace, ()):
        if labels_match(labels, proxy.labels):
            return cfg
    own = idx.defaults.get(proxy.namespace)
    if own is not None:
        return own
    return idx.defaults.get(state.mesh.root_namespace)


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

    def candidates(self, state: MeshState) -> Iterable[Service]:
        """The services these entries can select, from the state's indexes: a
        namespace's services for `ns/*`, one service for an exact host, the whole
        mesh only for `*/pattern`. A superset of what `allows` admits."""
        out: dict[str, Service] = {}
        for ns, host in self.entries:
            if ns == "~":
                continue
            if not any(ch in host for ch in "*?["):
                svc = state.services.get(host)
                if svc is not None:
                    out[host] = svc
                continue
            if ns == "*":
                return state.services.values()
            for svc in state.services_by_namespace.get(ns, ()):
                out[svc.hostname] = svc
        return out.values()

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
        for svc in egress.candidates(state)
        if exported_to(svc.export_to, svc.namespace, proxy.namespace) and egress.allows(svc.namespace, svc.hostname)
    ]
    out.sort(key=lambda s: s.hostname)
    return out


def config_visible(cfg: Config, viewer_ns: str) -> bool:
    spec: Any = cfg.spec
    export = list(getattr(spec, "export_to", []) or [])
    return exported_to(export, cfg.meta.namespace, viewer_ns)
