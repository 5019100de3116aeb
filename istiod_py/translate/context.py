"""Per-state translation context: lookups shared by every proxy, and memoization
so each distinct piece of output is built once per MeshState."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from istiod_py.config.model import Config
from istiod_py.model import MeshState, Proxy, ProxyType, Service
from istiod_py.model.service import Port, Protocol

from .scope import (
    ALL_HOSTS,
    EgressHosts,
    SidecarIndex,
    config_visible,
    host_matches,
    sidecar_for,
    visible_services,
)

T = TypeVar("T")
_INDEX_KEY = ("sidecar-index",)
_CAPTURE_NONE = 2  # networking.v1alpha3.CaptureMode NONE (DEFAULT 0, IPTABLES 1)


def fqdn(host: str, namespace: str, domain: str = "cluster.local") -> str:
    """Resolve a short name the way Istio does: relative to the config's namespace."""
    if "." in host or host == "*" or host.startswith("*"):
        return host
    return f"{host}.{namespace}.svc.{domain}"


@dataclass(frozen=True, slots=True)
class EgressListener:
    port: Port | None  # None: every service port (no port in the Sidecar egress entry)
    bind: str
    hosts: EgressHosts
    # Sidecar `captureMode: NONE` on this entry: a listener that binds its port even
    # when the proxy's traffic is otherwise captured by iptables.
    capture_none: bool = False


@dataclass(frozen=True, slots=True)
class IngressListener:
    port: Port
    bind: str
    default_endpoint: str  # host:port of the app
    capture_none: bool = False  # Sidecar `captureMode: NONE` on this entry (see EgressListener)


@dataclass(frozen=True)
class SidecarScope:
    key: Hashable
    sidecar: Config | None
    egress: tuple[EgressListener, ...]
    ingress: tuple[IngressListener, ...]
    services: tuple[Service, ...]
    outbound_policy: str


def ref_of(cfg: Config, path: str = "") -> str:
    """A provenance reference: `Kind/namespace/name`, with `:field.path` when known."""
    ref = f"{cfg.meta.kind}/{cfg.meta.namespace}/{cfg.meta.name}"
    return f"{ref}:{path}" if path else ref


@dataclass
class PushContext:
    state: MeshState
    memo: dict[Hashable, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # translation-time errors (e.g. EnvoyFilter), for /debug/configz
    # Provenance (translate/provenance.py): the configs each memoized value read
    # while it was built, replayed into the reader's frame on a hit, so a shared
    # value attributes its inputs to every resource that uses it.
    memo_reads: dict[Hashable, frozenset[str]] = field(default_factory=dict)
    frames: list[set[str]] = field(default_factory=list)
    # Sub-resources (virtual hosts) traced while their resource is built, keyed
    # "resource/sub"; the translator moves them onto the resource's Part.
    sub_origins: dict[str, frozenset[str]] = field(default_factory=dict)
    # Equal read-sets share one object: thousands of resources have the same few.
    refsets: dict[frozenset[str], frozenset[str]] = field(default_factory=dict)
    _last_scope: tuple[Proxy, SidecarScope] | None = None  # see sidecar_scope
    _dr_idx: tuple[dict[str, list[tuple[str, Config]]], list[tuple[str, Config]]] | None = None

    def refs(self, reads: frozenset[str]) -> frozenset[str]:
        return self.refsets.setdefault(reads, reads)

    def cached(self, key: Hashable, build: Callable[[], T]) -> T:
        try:
            value: T = self.memo[key]
        except KeyError:
            frames = self.frames
            frame: set[str] = set()
            frames.append(frame)
            try:
                value = build()
            finally:
                frames.pop()
            self.memo[key] = value
            if frame:
                reads = self.refs(frozenset(frame))
                self.memo_reads[key] = reads
                if frames:
                    frames[-1].update(reads)
                set_default = getattr(value, "set_default_origins", None)
                if set_default is not None:
                    set_default(reads)
            return value
        if self.frames:
            replay = self.memo_reads.get(key)
            if replay:
                self.frames[-1].update(replay)
        return value

    def replay(self, key: Hashable) -> frozenset[str]:
        """Record what memoized value `key` read (for a value computed before the
        frame opened, e.g. the Sidecar scope), and return it."""
        reads = self.memo_reads.get(key, frozenset())
        if reads and self.frames:
            self.frames[-1].update(reads)
        return reads

    def take_sub_origins(self) -> dict[str, frozenset[str]]:
        out, self.sub_origins = self.sub_origins, {}
        return out

    def note(self, ref: str) -> None:
        """Record that the value being built read config `ref` (see ref_of)."""
        if self.frames:
            self.frames[-1].add(ref)

    def traced(self, build: Callable[[], T]) -> tuple[T, frozenset[str]]:
        """`build()` and the configs it read (memoized reads included)."""
        frame: set[str] = set()
        self.frames.append(frame)
        try:
            value = build()
        finally:
            self.frames.pop()
        if self.frames:
            self.frames[-1].update(frame)
        return value, self.refs(frozenset(frame))

    @property
    def domain(self) -> str:
        return self.state.mesh.trust_domain

    # --- scope -----------------------------------------------------------

    def sidecar_scope(self, proxy: Proxy) -> SidecarScope:
        # A proxy's four types (and the parts inside them) ask for its scope several
        # times in a row: the last answer is kept for the same proxy object (frozen).
        last = self._last_scope
        if last is not None and last[0] is proxy:
            if self.frames:
                self.replay(_INDEX_KEY)
                self.replay(last[1].key)  # provenance, as a memo hit would record it
            return last[1]
        # Sidecar resources do not apply to gateways (istiod gives routers the default scope).
        index = self.cached(_INDEX_KEY, lambda: SidecarIndex.of(self.state))
        sc = sidecar_for(self.state, proxy, index) if proxy.type != ProxyType.ROUTER else None
        key = ("scope", proxy.namespace, sc.meta.namespace + "/" + sc.meta.name if sc else "", proxy.type)
        scope = self.cached(key, lambda: self._build_scope(proxy, sc, key))
        self._last_scope = (proxy, scope)
        return scope

    def _build_scope(self, proxy: Proxy, sc: Config | None, key: Hashable) -> SidecarScope:
        policy = self.state.mesh.outbound_traffic_policy
        if sc is not None:
            self.note(ref_of(sc))
        if sc is None:
            egress = (EgressListener(None, "", ALL_HOSTS),)
            return SidecarScope(key, None, egress, (), tuple(visible_services(self.state, proxy)), policy)
        spec: Any = sc.spec
        egress_list = []
        seen: dict[str, Service] = {}
        for eg in spec.egress:
            hosts = EgressHosts.parse(list(eg.hosts), sc.meta.namespace)
            port = None
            if eg.HasField("port") and eg.port.number:
                port = Port(eg.port.name, eg.port.number, _protocol_of(eg.port.protocol, eg.port.name))
            egress_list.append(EgressListener(port, eg.bind, hosts, int(eg.capture_mode) == _CAPTURE_NONE))
            for svc in visible_services(self.state, proxy, hosts):
                seen.setdefault(svc.hostname, svc)
        ingress_list = []
        for ing in spec.ingress:
            port = Port(
                ing.port.name,
                ing.port.number,
                _protocol_of(ing.port.protocol, ing.port.name),
                ing.port.target_port if hasattr(ing.port, "target_port") else 0,
            )
            ingress_list.append(
                IngressListener(port, ing.bind, ing.default_endpoint, int(ing.capture_mode) == _CAPTURE_NONE)
            )
        if spec.HasField("outbound_traffic_policy"):
            mode = spec.outbound_traffic_policy.mode
            policy = "REGISTRY_ONLY" if int(mode) == 0 else "ALLOW_ANY"
        services = tuple(sorted(seen.values(), key=lambda s: s.hostname))
        return SidecarScope(key, sc, tuple(egress_list), tuple(ingress_list), services, policy)

    # --- config lookups ------------------------------------------------------

    def destination_rule(self, host: str, viewer_ns: str) -> Config | None:
        """The DestinationRule for a host as seen from a namespace: the viewer's own
        namespace first, then the service's, then the root namespace; an exact host
        beats a wildcard."""
        index = self._dr_idx
        if index is None:
            index = self._dr_idx = self._dr_index()
        if not index[1] and host not in index[0]:
            return None  # no rule can match: no memo entry per (host, namespace) either
        return self.cached(("dr", host, viewer_ns), lambda: self._find_dr(host, viewer_ns))

    def _dr_index(self) -> tuple[dict[str, list[tuple[str, Config]]], list[tuple[str, Config]]]:
        """DestinationRules by exact host, and the wildcard ones: a lookup reads the
        rules that can match its host, not every rule in the mesh."""

        def build() -> tuple[dict[str, list[tuple[str, Config]]], list[tuple[str, Config]]]:
            exact: dict[str, list[tuple[str, Config]]] = {}
            wild: list[tuple[str, Config]] = []
            for cfg in self.state.of_kind("DestinationRule"):
                spec: Any = cfg.spec
                dr_host = fqdn(spec.host, cfg.meta.namespace, self.domain)
                if dr_host.startswith("*"):
                    wild.append((dr_host, cfg))
                else:
                    exact.setdefault(dr_host, []).append((dr_host, cfg))
            return exact, wild

        return self.cached(("dr-index",), build)

    def _find_dr(self, host: str, viewer_ns: str) -> Config | None:
        svc = self.state.services.get(host)
        order = [viewer_ns, svc.namespace if svc else "", self.state.mesh.root_namespace]
        best: tuple[int, int, Config] | None = None
        exact, wild = self._dr_index()
        for dr_host, cfg in (*exact.get(host, ()), *wild):
            if not config_visible(cfg, viewer_ns):
                continue
            if not host_matches(dr_host, host):
                continue
            try:
                rank = order.index(cfg.meta.namespace)
            except ValueError:
                rank = len(order)
            cand = (0 if dr_host == host else 1, rank, cfg)
            if best is None or (cand[0], cand[1]) < (best[0], best[1]):
                best = cand
        if best is not None:
            self.note(ref_of(best[2]))
        return best[2] if best else None

    def virtual_services(self, viewer_ns: str, gateway: str = "mesh") -> tuple[Config, ...]:
        def build() -> tuple[Config, ...]:
            out = []
            for cfg in self.state.of_kind("VirtualService"):
                spec: Any = cfg.spec
                gws = list(spec.gateways) or ["mesh"]
                names = {g if g == "mesh" or "/" in g else f"{cfg.meta.namespace}/{g}" for g in gws}
                if gateway not in names:
                    continue
                if gateway == "mesh" and not config_visible(cfg, viewer_ns):
                    continue
                out.append(cfg)
            # As istiod: Gateway API routes of the viewer's own namespace come first, so a
            # consumer route (GAMMA) overrides the Service owner's for that namespace.
            out.sort(key=lambda c: not (c.meta.namespace == viewer_ns and _gateway_semantics(c)))
            return tuple(out)

        return self.cached(("vs", viewer_ns, gateway), build)

    def vs_for_host(self, host: str, viewer_ns: str, gateway: str = "mesh") -> Config | None:
        """The first VirtualService (oldest first, as Istio: here by namespace/name)
        whose hosts cover `host`."""
        for cfg in self.virtual_services(viewer_ns, gateway):
            spec: Any = cfg.spec
            for h in spec.hosts:
                if host_matches(fqdn(h, cfg.meta.namespace, self.domain), host):
                    self.note(ref_of(cfg))
                    return cfg
        return None


def _gateway_semantics(cfg: Config) -> bool:
    return cfg.meta.annotations.get("internal.istio.io/route-semantics") == "gateway"


def _protocol_of(declared: str, name: str) -> Protocol:
    from istiod_py.model import protocol_from

    return protocol_from(declared=declared, port_name=name)
