"""Mesh-wide settings (Istio's MeshConfig subset) and the immutable MeshState."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import yaml

from .mesh_telemetry import MeshTelemetry, MeshTelemetryError, parse_mesh_telemetry
from .service import Endpoint, Service

if TYPE_CHECKING:
    from istiod_py.config.model import Config


class MeshConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class MeshConfig:
    root_namespace: str = "istio-system"
    trust_domain: str = "cluster.local"
    # Other trust domains whose workloads this mesh accepts as peers (inbound mTLS).
    trust_domain_aliases: tuple[str, ...] = ()
    outbound_traffic_policy: str = "ALLOW_ANY"  # or REGISTRY_ONLY
    enable_auto_mtls: bool = True
    connect_timeout_s: float = 10.0
    # Istio's default retry policy on every route without one of its own.
    default_retry_attempts: int = 2
    extension_providers: tuple[Mapping[str, Any], ...] = ()
    # accessLog*, enableTracing, defaultConfig.tracing, defaultProviders, typed extensionProviders.
    telemetry: MeshTelemetry = field(default_factory=MeshTelemetry)

    @staticmethod
    def from_dict(raw: Mapping[str, Any], source: str = "mesh config") -> MeshConfig:
        known = {
            "rootNamespace",
            "trustDomain",
            "trustDomainAliases",
            "outboundTrafficPolicy",
            "enableAutoMtls",
            "connectTimeout",
            "extensionProviders",
            "defaultConfig",
            "accessLogFile",
            "accessLogEncoding",
            "accessLogFormat",
            "enableTracing",
            "defaultProviders",
        }
        for key in raw:
            if key not in known:
                raise MeshConfigError(f"{source}: unknown field {key!r} (known: {', '.join(sorted(known))})")
        otp = raw.get("outboundTrafficPolicy") or {}
        mode = str(otp.get("mode", "ALLOW_ANY")) if isinstance(otp, Mapping) else ""
        if mode not in ("ALLOW_ANY", "REGISTRY_ONLY"):
            raise MeshConfigError(f"{source}: outboundTrafficPolicy.mode must be ALLOW_ANY or REGISTRY_ONLY")
        ct = str(raw.get("connectTimeout", "10s"))
        try:
            connect = float(ct[:-1]) if ct.endswith("s") else float(ct)
        except ValueError:
            raise MeshConfigError(f"{source}: connectTimeout {ct!r} is not a duration like '10s'") from None
        providers = raw.get("extensionProviders") or []
        if not isinstance(providers, list):
            raise MeshConfigError(f"{source}: extensionProviders must be a list")
        aliases = raw.get("trustDomainAliases") or []
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise MeshConfigError(f"{source}: trustDomainAliases must be a list of strings")
        try:
            telemetry = parse_mesh_telemetry(raw, source)
        except MeshTelemetryError as e:
            raise MeshConfigError(str(e)) from None
        return MeshConfig(
            root_namespace=str(raw.get("rootNamespace", "istio-system")),
            trust_domain=str(raw.get("trustDomain", "cluster.local")),
            trust_domain_aliases=tuple(aliases),
            outbound_traffic_policy=mode,
            enable_auto_mtls=bool(raw.get("enableAutoMtls", True)),
            connect_timeout_s=connect,
            extension_providers=tuple(MappingProxyType(dict(p)) for p in providers),
            telemetry=telemetry,
        )

    @staticmethod
    def load(path: str) -> MeshConfig:
        with open(path, encoding="utf-8") as f:
            try:
                raw = yaml.safe_load(f) or {}
            except yaml.YAMLError as e:
                raise MeshConfigError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(raw, Mapping):
            raise MeshConfigError(f"{path}: mesh config must be a YAML map")
        return MeshConfig.from_dict(raw, path)


def digest_strings(parts: Sequence[str]) -> str:
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()


@dataclass(frozen=True)
class MeshState:
    """Everything translation reads, frozen at one version.

    A push works on one MeshState from start to end; a change makes a new one.
    Derived indexes are computed lazily, once per state."""

    version: int
    services: Mapping[str, Service]  # hostname -> Service
    endpoints: Mapping[str, tuple[Endpoint, ...]]  # hostname -> endpoints (all ports)
    configs: Mapping[str, tuple[Config, ...]]  # kind -> configs, sorted by namespace/name
    mesh: MeshConfig = field(default_factory=MeshConfig)
    # Digest of each host's endpoints: lets EDS output be reused across states.
    endpoint_digests: Mapping[str, str] = field(default_factory=dict)
    # Gateway API status conditions (config/gatewayapi/status.py ResourceStatus), from the conversion.
    gateway_api_status: tuple[Any, ...] = ()

    def of_kind(self, kind: str) -> tuple[Config, ...]:
        return self.configs.get(kind, ())

    @cached_property
    def services_by_namespace(self) -> Mapping[str, tuple[Service, ...]]:
        out: dict[str, list[Service]] = {}
        for svc in self.services.values():
            out.setdefault(svc.namespace, []).append(svc)
        return {ns: tuple(v) for ns, v in out.items()}

    @cached_property
    def endpoints_by_address(self) -> Mapping[str, tuple[Endpoint, ...]]:
        out: dict[str, list[Endpoint]] = {}
        for eps in self.endpoints.values():
            for ep in eps:
                out.setdefault(ep.address, []).append(ep)
        return {a: tuple(v) for a, v in out.items()}

    @cached_property
    def kind_digests(self) -> Mapping[str, str]:
        """A content digest per config kind: what changed between two states.
        (The aggregator precomputes it from cached spec bytes.)"""
        return {kind: kind_digest(items, spec_bytes) for kind, items in self.configs.items()}

    @cached_property
    def services_digest(self) -> str:
        return digest_strings([service_text(s) for s in self.services.values()])

    def endpoints_for(self, hostname: str, port: int) -> tuple[Endpoint, ...]:
        return tuple(ep for ep in self.endpoints.get(hostname, ()) if ep.service_port == port)


# Spec fields whose whole effect on output is the endpoints they make: left out
# of the kind digest, so an edit of only these is seen in the endpoint digests
# (an EDS-only push, as istiod's ServiceEntry controller does when the services
# it derives are unchanged). registry/aggregate.py diff() escalates the cases
# where endpoints reach CDS (DNS resolution, service accounts).
ENDPOINT_FIELDS: Mapping[str, tuple[str, ...]] = {"ServiceEntry": ("endpoints",)}


def spec_bytes(c: Config) -> bytes:
    fields = ENDPOINT_FIELDS.get(c.meta.kind)
    if fields and any(len(getattr(c.spec, f)) for f in fields):
        spec = type(c.spec)()
        spec.CopyFrom(c.spec)
        for f in fields:
            spec.ClearField(f)
        return spec.SerializeToString(deterministic=True)
    return c.spec.SerializeToString(deterministic=True)


def kind_digest(items: Iterable[Config], spec_of: Callable[[Config], bytes]) -> str:
    h = hashlib.blake2b(digest_size=8)
    for c in items:
        h.update(f"{c.meta.namespace}/{c.meta.name}/{sorted(c.meta.labels.items())}".encode())
        h.update(spec_of(c))
    return h.hexdigest()


def service_text(s: Service) -> str:
    return repr(s) + repr(sorted((s.selector or {}).items()))


def changed_kinds(a: MeshState, b: MeshState) -> set[str]:
    return {k for k in set(a.kind_digests) | set(b.kind_digests) if a.kind_digests.get(k) != b.kind_digests.get(k)}


def endpoint_digest(eps: Sequence[Endpoint]) -> str:
    return digest_strings(
        [
            f"{e.service_port}|{e.address}|{e.port}|{e.labels_key}|{e.locality}|{e.weight}|"
            f"{e.service_account}|{e.tls_mode}|{e.healthy}|{e.namespace}"
            for e in eps
        ]
    )
