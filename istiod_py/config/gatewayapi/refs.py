"""ReferenceGrants and backend references: which cross-namespace references are
permitted, and what a backendRef resolves to (an Istio destination host and port)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from istiod_py.config.model import Config

from . import status as S

GROUP = "gateway.networking.k8s.io"
ISTIO_GROUP = "networking.istio.io"
DOMAIN = "cluster.local"


class Grants:
    """ReferenceGrants indexed by (from kind, from namespace, to kind, to namespace) -> names (None: all)."""

    def __init__(self, grants: Iterable[Config]) -> None:
        self._allow: dict[tuple[str, str, str, str], set[str] | None] = {}
        for g in grants:
            spec: Any = g.spec
            for f in getattr(spec, "from"):
                if f.group != GROUP:
                    continue
                for t in spec.to:
                    if t.group != "":
                        continue
                    key = (f.kind, f.namespace, t.kind, g.meta.namespace)
                    if not t.HasField("name"):
                        self._allow[key] = None
                    elif key not in self._allow or self._allow[key] is not None:
                        names = self._allow.get(key) or set()
                        names.add(t.name)
                        self._allow[key] = names

    def allowed(self, from_kind: str, from_ns: str, to_kind: str, to_ns: str, name: str) -> bool:
        if from_ns == to_ns:
            return True
        key = (from_kind, from_ns, to_kind, to_ns)
        if key not in self._allow:
            return False
        names = self._allow[key]
        return names is None or name in names


@dataclass(frozen=True)
class Resolved:
    host: str = ""
    port: int = 0
    # a ResolvedRefs=False reason and message when the reference cannot be used
    reason: str = ""
    message: str = ""

    @property
    def ok(self) -> bool:
        return not self.reason


@dataclass(frozen=True)
class Registry:
    """What backends can point at: Kubernetes Services by (namespace, name), ServiceEntry hosts."""

    services: frozenset[tuple[str, str]]
    hosts: frozenset[str]

    def service_exists(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self.services


def resolve_backend(ref: Any, route_kind: str, route_ns: str, grants: Grants, reg: Registry) -> Resolved:
    """A BackendObjectReference as istiod resolves it: Service (core group) or Istio
    `Hostname` (a ServiceEntry host); the port is required for both."""
    group, kind = ref.group, ref.kind or "Service"
    ns = ref.namespace or route_ns
    port = ref.port if ref.HasField("port") else 0
    if group == "" and kind == "Service":
        if not grants.allowed(route_kind, route_ns, "Service", ns, ref.name):
            return Resolved(
                reason=S.R_REF_NOT_PERMITTED,
                message=f"backendRef {ref.name}/{ns} not accessible to a {route_kind} in namespace {route_ns!r} "
                "(missing a ReferenceGrant?)",
            )
        host = f"{ref.name}.{ns}.svc.{DOMAIN}"
        if not port:
            return Resolved(host, 0, S.R_UNSUPPORTED_VALUE, "port is required in backendRef")
        if not reg.service_exists(ns, ref.name) and host not in reg.hosts:
            return Resolved(host, port, S.R_BACKEND_NOT_FOUND, f"backend({host}) not found")
        return Resolved(host, port)
    if group == ISTIO_GROUP and kind == "Hostname":
        if ref.namespace:
            return Resolved(reason=S.R_UNSUPPORTED_VALUE, message="namespace may not be set with Hostname type")
        if not port:
            return Resolved(ref.name, 0, S.R_UNSUPPORTED_VALUE, "port is required in backendRef")
        if ref.name not in reg.hosts:
            return Resolved(ref.name, port, S.R_BACKEND_NOT_FOUND, f"backend({ref.name}) not found")
        return Resolved(ref.name, port)
    return Resolved(
        reason=S.R_INVALID_KIND,
        message=f"referencing unsupported backendRef: group {group!r} kind {kind!r} "
        "(istiod_py supports Service and networking.istio.io Hostname)",
    )
