"""Status as the Gateway API spec defines it: conditions per GatewayClass, Gateway,
listener and route parent, with the spec's condition types and reasons.

Conversion fills these; `/debug/configz` and `istiod-py analyze` show them (file mode);
a Kubernetes status writer can write `as_dict()` into the resources' `status`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from istiod_py.config.model import ConfigError

CONTROLLER = "istio.io/gateway-controller"

# Condition types
ACCEPTED = "Accepted"
PROGRAMMED = "Programmed"
RESOLVED_REFS = "ResolvedRefs"
CONFLICTED = "Conflicted"

# Reasons (gateway-api apis/v1: GatewayConditionReason, ListenerConditionReason, RouteConditionReason)
R_ACCEPTED = "Accepted"
R_PROGRAMMED = "Programmed"
R_RESOLVED_REFS = "ResolvedRefs"
R_INVALID = "Invalid"
R_LISTENERS_NOT_VALID = "ListenersNotValid"
R_UNSUPPORTED_ADDRESS = "UnsupportedAddress"
R_NO_CONFLICTS = "NoConflicts"
R_HOSTNAME_CONFLICT = "HostnameConflict"
R_PROTOCOL_CONFLICT = "ProtocolConflict"
R_UNSUPPORTED_PROTOCOL = "UnsupportedProtocol"
R_INVALID_CERTIFICATE_REF = "InvalidCertificateRef"
R_INVALID_ROUTE_KINDS = "InvalidRouteKinds"
R_REF_NOT_PERMITTED = "RefNotPermitted"
R_NOT_ALLOWED_BY_LISTENERS = "NotAllowedByListeners"
R_NO_MATCHING_LISTENER_HOSTNAME = "NoMatchingListenerHostname"
R_NO_MATCHING_PARENT = "NoMatchingParent"
R_UNSUPPORTED_VALUE = "UnsupportedValue"
R_INVALID_KIND = "InvalidKind"
R_BACKEND_NOT_FOUND = "BackendNotFound"


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "status": "True" if self.status else "False",
            "reason": self.reason,
            "message": self.message,
        }


@dataclass
class ListenerStatus:
    name: str
    supported_kinds: list[str] = field(default_factory=list)
    attached_routes: int = 0
    conditions: list[Condition] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "supportedKinds": [{"group": "gateway.networking.k8s.io", "kind": k} for k in self.supported_kinds],
            "attachedRoutes": self.attached_routes,
            "conditions": [c.as_dict() for c in self.conditions],
        }


@dataclass
class ParentStatus:
    parent_ref: dict[str, Any]
    conditions: list[Condition] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "parentRef": self.parent_ref,
            "controllerName": CONTROLLER,
            "conditions": [c.as_dict() for c in self.conditions],
        }


@dataclass
class ResourceStatus:
    """The status of one Gateway API resource (`kind` as users write it)."""

    kind: str
    namespace: str
    name: str
    source: str = ""
    doc_index: int = 0
    conditions: list[Condition] = field(default_factory=list)
    listeners: list[ListenerStatus] = field(default_factory=list)
    parents: list[ParentStatus] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.conditions:
            out["conditions"] = [c.as_dict() for c in self.conditions]
        if self.listeners:
            out["listeners"] = [li.as_dict() for li in self.listeners]
        if self.kind.endswith("Route"):
            out["parents"] = [p.as_dict() for p in self.parents]
        return out

    def problems(self) -> list[str]:
        """One line per False condition (True for Conflicted), for `istiod-py analyze`."""
        lines = []
        for c in self.conditions:
            if _bad(c):
                lines.append(f"{c.type}={_s(c)} {c.reason}: {c.message}")
        for li in self.listeners:
            for c in li.conditions:
                if _bad(c):
                    lines.append(f"listener {li.name}: {c.type}={_s(c)} {c.reason}: {c.message}")
        for p in self.parents:
            ref = p.parent_ref.get("name", "")
            for c in p.conditions:
                if _bad(c):
                    lines.append(f"parentRef {ref}: {c.type}={_s(c)} {c.reason}: {c.message}")
        return lines

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return f"{where}{self.kind} {self.namespace}/{self.name}"


def _bad(c: Condition) -> bool:
    return c.status if c.type == CONFLICTED else not c.status


def _s(c: Condition) -> str:
    return "True" if c.status else "False"


def warnings(statuses: Iterable[ResourceStatus]) -> list[ConfigError]:
    """Unhealthy conditions as located warnings, for `istiod-py analyze`."""
    return [
        ConfigError(st.source, st.doc_index, line, st.kind, st.namespace, st.name, "status")
        for st in statuses
        for line in st.problems()
    ]
