"""Merges every source's inputs into one immutable MeshState."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

from istiod_py.config.gatewayapi.convert import Converter
from istiod_py.config.kube_types import EndpointSlice, KubeService
from istiod_py.config.model import Config, ConfigError
from istiod_py.model import Endpoint, MeshConfig, MeshState, Service, endpoint_digest
from istiod_py.model.mesh import changed_kinds, digest_strings, kind_digest, service_text, spec_bytes

from .file import ConversionCache, build_registry
from .pods import EMPTY_INDEX, PodIndex, PodInfo


@dataclass(frozen=True)
class SourceSnapshot:
    """What one source (a directory, a cluster) currently says."""

    configs: tuple[Config, ...] = ()
    services: tuple[KubeService, ...] = ()
    endpoint_slices: tuple[EndpointSlice, ...] = ()
    errors: tuple[ConfigError, ...] = ()
    # Kubernetes source: Pods, joined with EndpointSlice endpoints (registry/pods.py)
    pods: tuple[PodInfo, ...] = ()


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
    _svc_text: dict[int, tuple[Service, str]] = field(default_factory=dict)
    # Gateway API resources become Istio Gateways/VirtualServices here, where the whole config is known.
    _gateway_api: Converter = field(default_factory=Converter)
    _pod_index: tuple[tuple[tuple[PodInfo, ...], ...], PodIndex] = ((), EMPTY_INDEX)

    def _spec(self, c: Config) -> bytes:
        hit = self._spec_bytes.get(id(c))
        if hit is not None and hit[0] is c:
            return hit[1]
        b = spec_bytes(c)
        self._spec_bytes[id(c)] = (c, b)
        return b

    def _text(self, s: Service) -> str:
        hit = self._svc_text.get(id(s))
        if hit is not None and hit[0] is s:
            return hit[1]
        return service_text(s)

    def set_source(self, name: str, snap: SourceSnapshot) -> None:
        self.sources[name] = snap

    @property
    def errors(self) -> list[ConfigError]:
        return [e for s in self.sources.values() for e in s.errors]

    def _pods(self) -> PodIndex:
        """The Pod index, rebuilt only when some source's Pods changed."""
        tuples = tuple(self.sources[n].pods for n in sorted(self.sources) if self.sources[n].pods)
        cached, index = self._pod_index
        if len(cached) == len(tuples) and all(a is b for a, b in zip(cached, tuples, strict=True)):
            return index
        index = PodIndex(p for t in tuples for p in t)
        self._pod_index = (tuples, index)
        return index

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
        gateway_api = self._gateway_api(configs, services)
        if gateway_api.configs:
            configs = sorted(
                [*configs, *gateway_api.configs], key=lambda c: (c.meta.kind, c.meta.namespace, c.meta.name)
            )
        reg = build_registry(configs, services, slices, self.mesh.trust_domain, self._conversions, self._pods())
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
        kind_digests = {kind: kind_digest(items, self._spec) for kind, items in by_kind.items()}
        svcs = sorted(reg.services.values(), key=lambda s: s.hostname)
        svc_texts = [self._text(s) for s in svcs]
        self._svc_text = {id(s): (s, t) for s, t in zip(svcs, svc_texts, strict=True)}
        self.version += 1
        state = MeshState(
            version=self.version,
            services=MappingProxyType({s.hostname: s for s in svcs}),
            endpoints=MappingProxyType(endpoints),
            configs=MappingProxyType({k: tuple(v) for k, v in by_kind.items()}),
            mesh=self.mesh,
            endpoint_digests=MappingProxyType(digests),
            gateway_api_status=gateway_api.statuses,
        )
        # The same digests MeshState derives, from bytes cached across builds.
        state.__dict__["kind_digests"] = kind_digests
        state.__dict__["services_digest"] = digest_strings(svc_texts)
        return state


def _ep_key(e: Endpoint) -> tuple[int, str, int]:
    return (e.service_port, e.address, e.port)


# Kinds whose whole effect on output is the endpoints they make: a change to
# them alone is an endpoint change (as in Istio), seen in the endpoint digests.
ENDPOINT_KINDS = frozenset({"WorkloadEntry"})


def diff(old: MeshState | None, new: MeshState) -> Change:
    """What a new state changes: configs or services (full push), or only the
    endpoints of some hosts (EDS-only push of those hosts)."""
    if old is None or old.mesh != new.mesh:
        return Change(full=True, reason="config")
    if changed_kinds(old, new) - ENDPOINT_KINDS or old.services_digest != new.services_digest:
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
        # A headless Kubernetes Service's endpoints reach captured sidecars'
        # listeners (one per endpoint) and its ORIGINAL_DST cluster's mTLS choice:
        # a full push, as istiod's HeadlessEndpointUpdate.
        if svc is not None and svc.headless:
            return Change(full=True, reason="headless-endpoints")
        # Clusters verify the destination's service accounts (mTLS SANs): a new
        # identity behind a host changes CDS, not only EDS.
        if _accounts(old, h) != _accounts(new, h):
            return Change(full=True, reason="service-accounts")
    addresses = {ep.address for h in hosts for state in (old, new) for ep in state.endpoints.get(h, ())}
    return Change(full=False, eds_hosts=frozenset(hosts), reason="endpoints", addresses=frozenset(addresses))


def _accounts(state: MeshState, host: str) -> frozenset[str]:
    return frozenset(ep.service_account for ep in state.endpoints.get(host, ()) if ep.service_account)
