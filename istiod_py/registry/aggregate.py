"""Merges every source's inputs into one immutable MeshState."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from istiod_py.config.kube_types import EndpointSlice, KubeService
from istiod_py.config.model import Config, ConfigError
from istiod_py.model import Endpoint, MeshConfig, MeshState, Service, endpoint_digest

from .file import build_registry


@dataclass(frozen=True)
class SourceSnapshot:
    """What one source (a directory, a cluster) currently says."""

    configs: tuple[Config, ...] = ()
    services: tuple[KubeService, ...] = ()
    endpoint_slices: tuple[EndpointSlice, ...] = ()
    errors: tuple[ConfigError, ...] = ()


@dataclass(frozen=True)
class Change:
    full: bool
    eds_hosts: frozenset[str] = frozenset()
    reason: str = ""
    # Addresses whose endpoints changed: those proxies' inbound config may change.
    addresses: frozenset[str] = frozenset()


@dataclass
class Aggregator:
    mesh: MeshConfig = field(default_factory=MeshConfig)
    sources: dict[str, SourceSnapshot] = field(default_factory=dict)
    version: int = 0

    def set_source(self, name: str, snap: SourceSnapshot) -> None:
        self.sources[name] = snap

    @property
    def errors(self) -> list[ConfigError]:
        return [e for s in self.sources.values() for e in s.errors]

    def build(self) -> MeshState:
        configs: list[Config] = []
        services: list[KubeService] = []
        slices: list[EndpointSlice] = []
        for name in sorted(self.sources):
            s = self.sources[name]
            configs += s.configs
            services += s.services
            slices += s.endpoint_slices
        # Deterministic order: output (and so versions) depends only on content.
        configs.sort(key=lambda c: (c.meta.kind, c.meta.namespace, c.meta.name))
        services.sort(key=lambda s: (s.namespace, s.name))
        reg = build_registry(configs, services, slices, self.mesh.trust_domain)
        by_kind: dict[str, list[Config]] = {}
        for c in configs:
            by_kind.setdefault(c.meta.kind, []).append(c)
        endpoints = {h: tuple(sorted(eps, key=_ep_key)) for h, eps in reg.endpoints.items()}
        digests = {h: endpoint_digest(eps) for h, eps in endpoints.items()}
        self.version += 1
        return MeshState(
            version=self.version,
            services=MappingProxyType(dict(sorted(reg.services.items()))),
            endpoints=MappingProxyType(endpoints),
            configs=MappingProxyType({k: tuple(v) for k, v in by_kind.items()}),
            mesh=self.mesh,
            endpoint_digests=MappingProxyType(digests),
            config_digest=config_digest(configs, reg.services.values()),
        )


def _ep_key(e: Endpoint) -> tuple[int, str, int]:
    return (e.service_port, e.address, e.port)


def config_digest(configs: Sequence[Config], services: Iterable[Service]) -> str:
    h = hashlib.blake2b(digest_size=8)
    for c in configs:
        h.update(f"{c.meta.kind}/{c.meta.namespace}/{c.meta.name}".encode())
        h.update(c.spec.SerializeToString(deterministic=True))
    for s in sorted(services, key=lambda s: s.hostname):
        h.update(repr(s).encode())
    return h.hexdigest()


def diff(old: MeshState | None, new: MeshState) -> Change:
    """What a new state changes: configs or services (full push), or only the
    endpoints of some hosts (EDS-only push of those hosts)."""
    if old is None or old.config_digest != new.config_digest or old.mesh != new.mesh:
        return Change(full=True, reason="config")
    hosts = {
        h
        for h in set(old.endpoint_digests) | set(new.endpoint_digests)
        if old.endpoint_digests.get(h) != new.endpoint_digests.get(h)
    }
    # Endpoint changes of DNS services are inlined in clusters: those need CDS.
    for h in hosts:
        svc: Service | None = new.services.get(h)
        if svc is not None and svc.resolution.value != "STATIC":
            return Change(full=True, reason="dns-endpoints")
        # Clusters verify the destination's service accounts (mTLS SANs): a new
        # identity behind a host changes CDS, not only EDS.
        if _accounts(old, h) != _accounts(new, h):
            return Change(full=True, reason="service-accounts")
    addresses = {ep.address for h in hosts for state in (old, new) for ep in state.endpoints.get(h, ())}
    return Change(full=False, eds_hosts=frozenset(hosts), reason="endpoints", addresses=frozenset(addresses))


def _accounts(state: MeshState, host: str) -> frozenset[str]:
    return frozenset(ep.service_account for ep in state.endpoints.get(host, ()) if ep.service_account)
