"""Merges every source's inputs into one immutable MeshState."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from istiod_py.config.kube_types import EndpointSlice, KubeService
from istiod_py.config.model import Config, ConfigError
from istiod_py.model import Endpoint, MeshConfig, MeshState, Service, endpoint_digest
from istiod_py.model.mesh import digest_strings

from .file import ConversionCache, build_registry


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
    # Work on unchanged inputs is reused from the previous build (by identity).
    _conversions: ConversionCache = field(default_factory=ConversionCache)
    _spec_bytes: dict[int, tuple[Config, bytes]] = field(default_factory=dict)
    _eps: dict[tuple[int, ...], tuple[list[Endpoint], tuple[Endpoint, ...], str]] = field(default_factory=dict)
    _svc_repr: dict[int, tuple[Service, str]] = field(default_factory=dict)

    def _spec(self, c: Config) -> bytes:
        hit = self._spec_bytes.get(id(c))
        if hit is not None and hit[0] is c:
            return hit[1]
        b = c.spec.SerializeToString(deterministic=True)
        self._spec_bytes[id(c)] = (c, b)
        return b

    def _repr(self, s: Service) -> str:
        hit = self._svc_repr.get(id(s))
        if hit is not None and hit[0] is s:
            return hit[1]
        r = repr(s) + repr(sorted((s.selector or {}).items()))
        self._svc_repr[id(s)] = (s, r)
        return r

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
        reg = build_registry(configs, services, slices, self.mesh.trust_domain, self._conversions)
        by_kind: dict[str, list[Config]] = {}
        for c in configs:
            by_kind.setdefault(c.meta.kind, []).append(c)
        endpoints: dict[str, tuple[Endpoint, ...]] = {}
        digests: dict[str, str] = {}
        eps_cache: dict[tuple[int, ...], tuple[list[Endpoint], tuple[Endpoint, ...], str]] = {}
        for h, eps in reg.endpoints.items():
            key = tuple(id(e) for e in eps)
            hit = self._eps.get(key)
            if hit is None or len(hit[0]) != len(eps) or any(a is not b for a, b in zip(hit[0], eps, strict=True)):
                ordered = tuple(sorted(eps, key=_ep_key))
                hit = (list(eps), ordered, endpoint_digest(ordered))
            eps_cache[key] = hit
            endpoints[h] = hit[1]
            digests[h] = hit[2]
        self._eps = eps_cache
        live = {id(c) for c in configs}
        self._spec_bytes = {k: v for k, v in self._spec_bytes.items() if k in live}
        cfg_hash = hashlib.blake2b(digest_size=8)
        kind_digests: dict[str, str] = {}
        for kind, items in by_kind.items():
            kh = hashlib.blake2b(digest_size=8)
            for c in items:
                spec = self._spec(c)
                cfg_hash.update(f"{c.meta.kind}/{c.meta.namespace}/{c.meta.name}".encode())
                cfg_hash.update(spec)
                kh.update(f"{c.meta.namespace}/{c.meta.name}/{sorted(c.meta.labels.items())}".encode())
                kh.update(spec)
            kind_digests[kind] = kh.hexdigest()
        svc_reprs = [self._repr(s) for _, s in sorted(reg.services.items())]
        self._svc_repr = {id(s): (s, r) for s, r in zip(
            (s for _, s in sorted(reg.services.items())), svc_reprs, strict=True)}  # fmt: skip
        for r in svc_reprs:
            cfg_hash.update(r.encode())
        self.version += 1
        state = MeshState(
            version=self.version,
            services=MappingProxyType(dict(sorted(reg.services.items()))),
            endpoints=MappingProxyType(endpoints),
            configs=MappingProxyType({k: tuple(v) for k, v in by_kind.items()}),
            mesh=self.mesh,
            endpoint_digests=MappingProxyType(digests),
            config_digest=cfg_hash.hexdigest(),
        )
        # Digests computed here from cached bytes; MeshState would recompute them.
        state.__dict__["kind_digests"] = kind_digests
        state.__dict__["services_digest"] = digest_strings(svc_reprs)
        return state


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
