"""PeerAuthentication -> the mutual TLS mode of a workload port, as istiod resolves it.

Three levels, most specific first: a policy with a workload selector in the
workload's namespace, a namespace-wide policy (no selector), and the mesh-wide
policy (no selector, in the root namespace). A level whose mode is UNSET
inherits from the next one; with nothing set the mode is PERMISSIVE. A workload
policy's `portLevelMtls` entry for a port overrides that policy's own mode for
that port (an UNSET port entry inherits the workload-level result).

When several policies compete at one level istiod takes the oldest; configs here
carry no creation time, so the first by namespace/name wins (deterministic).
Selector policies in the root namespace apply only to workloads of that
namespace, as in Istio.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from istiod_py.config.model import Config
from istiod_py.model import Service, labels_match

from ..context import PushContext

KIND = "PeerAuthentication"


class MTLSMode(enum.Enum):
    UNSET = 0
    DISABLE = 1
    PERMISSIVE = 2
    STRICT = 3


@dataclass(frozen=True)
class PolicyLevel:
    """One policy's contribution: its mode and its port-level modes."""

    mode: MTLSMode = MTLSMode.UNSET
    ports: Mapping[int, MTLSMode] = field(default_factory=dict)


@dataclass(frozen=True)
class EffectivePolicy:
    """The resolved policy of one workload (namespace + labels)."""

    mode: MTLSMode  # never UNSET
    ports: Mapping[int, MTLSMode] = field(default_factory=dict)  # never UNSET values

    def for_port(self, port: int) -> MTLSMode:
        return self.ports.get(port, self.mode)

    def key(self) -> tuple[object, ...]:
        return (self.mode, tuple(sorted((p, m.value) for p, m in self.ports.items())))


def _level(cfg: Config | None) -> PolicyLevel:
    if cfg is None:
        return PolicyLevel()
    spec: Any = cfg.spec
    mode = MTLSMode(int(spec.mtls.mode)) if spec.HasField("mtls") else MTLSMode.UNSET
    ports = {int(p): MTLSMode(int(m.mode)) for p, m in spec.port_level_mtls.items()}
    return PolicyLevel(mode, ports)


def _has_selector(cfg: Config) -> bool:
    spec: Any = cfg.spec
    return bool(spec.HasField("selector") and spec.selector.match_labels)


def _first(configs: Iterable[Config]) -> Config | None:
    return next(iter(configs), None)


def resolve(mesh: PolicyLevel, namespace: PolicyLevel, workload: PolicyLevel) -> EffectivePolicy:
    """Inheritance workload > namespace > mesh > PERMISSIVE, then port overrides."""
    base = MTLSMode.PERMISSIVE
    for level in (mesh, namespace, workload):
        if level.mode != MTLSMode.UNSET:
            base = level.mode
    ports = {p: m for p, m in workload.ports.items() if m != MTLSMode.UNSET}
    return EffectivePolicy(base, ports)


_NO_POLICY = EffectivePolicy(MTLSMode.PERMISSIVE, {})


class PeerAuthentications:
    """Index of the PeerAuthentication configs of one MeshState."""

    def __init__(self, configs: Iterable[Config], root_namespace: str) -> None:
        self.root_namespace = root_namespace
        self._namespace: dict[str, Config] = {}
        self._selector: dict[str, list[Config]] = {}
        for cfg in sorted(configs, key=lambda c: (c.meta.namespace, c.meta.name)):
            ns = cfg.meta.namespace
            if _has_selector(cfg):
                self._selector.setdefault(ns, []).append(cfg)
            else:
                self._namespace.setdefault(ns, cfg)

    def mesh_level(self) -> PolicyLevel:
        return _level(self._namespace.get(self.root_namespace))

    def namespace_level(self, namespace: str) -> PolicyLevel:
        if namespace == self.root_namespace:
            return PolicyLevel()  # the root namespace's own policy is the mesh level
        return _level(self._namespace.get(namespace))

    def workload_level(self, namespace: str, labels: Mapping[str, str]) -> PolicyLevel:
        def matches(cfg: Config) -> bool:
            spec: Any = cfg.spec
            return labels_match(spec.selector.match_labels, labels)

        return _level(_first(c for c in self._selector.get(namespace, ()) if matches(c)))

    def for_workload(self, namespace: str, labels: Mapping[str, str]) -> EffectivePolicy:
        return resolve(self.mesh_level(), self.namespace_level(namespace), self.workload_level(namespace, labels))

    def for_service(self, svc: Service) -> EffectivePolicy:
        """istiod's best-effort view of a service's server side, for auto mTLS: the
        mesh/namespace levels, plus a workload policy whose selector covers every
        workload the service selects."""
        if not self._namespace and not self._selector:
            return _NO_POLICY  # no PeerAuthentication at all: what resolve() gives for three UNSET levels
        workload = PolicyLevel()
        if svc.selector:
            selector = svc.selector

            def covers(cfg: Config) -> bool:
                spec: Any = cfg.spec
                return labels_match(spec.selector.match_labels, selector)

            workload = _level(_first(c for c in self._selector.get(svc.namespace, ()) if covers(c)))
        return resolve(self.mesh_level(), self.namespace_level(svc.namespace), workload)


def index(ctx: PushContext) -> PeerAuthentications:
    return ctx.cached(
        ("peer-authn",), lambda: PeerAuthentications(ctx.state.of_kind(KIND), ctx.state.mesh.root_namespace)
    )


def workload_policy(ctx: PushContext, namespace: str, labels: Mapping[str, str]) -> EffectivePolicy:
    key = ("peer-authn-workload", namespace, tuple(sorted(labels.items())))
    return ctx.cached(key, lambda: index(ctx).for_workload(namespace, labels))


def service_policy(ctx: PushContext, svc: Service) -> EffectivePolicy:
    return ctx.cached(("peer-authn-service", svc.hostname), lambda: index(ctx).for_service(svc))
