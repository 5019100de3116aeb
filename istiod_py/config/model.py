"""Typed Istio config objects and the registry of kinds this control plane understands."""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from google.protobuf.message import Message
from istio.networking.v1alpha3 import (
    destination_rule_pb2,
    envoy_filter_pb2,
    gateway_pb2,
    service_entry_pb2,
    sidecar_pb2,
    virtual_service_pb2,
    workload_entry_pb2,
)
from istio.security.v1beta1 import (
    authorization_policy_pb2,
    peer_authentication_pb2,
    request_authentication_pb2,
)
from istio.telemetry.v1alpha1 import telemetry_pb2

DEFAULT_NAMESPACE = "default"
NETWORKING_GROUP = "networking.istio.io"
SECURITY_GROUP = "security.istio.io"
NETWORKING_VERSIONS = ("v1alpha3", "v1beta1", "v1")
SECURITY_VERSIONS = ("v1beta1", "v1")
TELEMETRY_GROUP = "telemetry.istio.io"
TELEMETRY_VERSIONS = ("v1alpha1", "v1")


def _frozen_map(items: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return MappingProxyType(dict(items or {}))


@dataclass(frozen=True)
class ConfigMeta:
    kind: str
    api_version: str
    name: str
    namespace: str = DEFAULT_NAMESPACE
    labels: Mapping[str, str] = field(default_factory=_frozen_map)
    annotations: Mapping[str, str] = field(default_factory=_frozen_map)
    source: str = ""
    doc_index: int = 0

    @property
    def key(self) -> tuple[str, str, str]:
        """Identity of a resource: two documents with the same key are the same resource."""
        return (self.kind, self.namespace, self.name)


@dataclass(frozen=True)
class Config:
    meta: ConfigMeta
    spec: Message


@dataclass(frozen=True)
class KindInfo:
    kind: str
    group: str
    versions: tuple[str, ...]
    message: type[Message]

    def accepts(self, api_version: str) -> bool:
        group, _, version = api_version.rpartition("/")
        return group == self.group and version in self.versions


def _kind(kind: str, group: str, versions: tuple[str, ...], message: type[Message]) -> tuple[str, KindInfo]:
    return kind, KindInfo(kind, group, versions, message)


KINDS: Mapping[str, KindInfo] = MappingProxyType(
    dict(
        [
            _kind("VirtualService", NETWORKING_GROUP, NETWORKING_VERSIONS, virtual_service_pb2.VirtualService),
            _kind("DestinationRule", NETWORKING_GROUP, NETWORKING_VERSIONS, destination_rule_pb2.DestinationRule),
            _kind("Gateway", NETWORKING_GROUP, NETWORKING_VERSIONS, gateway_pb2.Gateway),
            _kind("ServiceEntry", NETWORKING_GROUP, NETWORKING_VERSIONS, service_entry_pb2.ServiceEntry),
            _kind("WorkloadEntry", NETWORKING_GROUP, NETWORKING_VERSIONS, workload_entry_pb2.WorkloadEntry),
            _kind("Sidecar", NETWORKING_GROUP, NETWORKING_VERSIONS, sidecar_pb2.Sidecar),
            _kind("EnvoyFilter", NETWORKING_GROUP, ("v1alpha3",), envoy_filter_pb2.EnvoyFilter),
            _kind(
                "PeerAuthentication",
                SECURITY_GROUP,
                SECURITY_VERSIONS,
                peer_authentication_pb2.PeerAuthentication,
            ),
            _kind(
                "AuthorizationPolicy",
                SECURITY_GROUP,
                SECURITY_VERSIONS,
                authorization_policy_pb2.AuthorizationPolicy,
            ),
            _kind(
                "RequestAuthentication",
                SECURITY_GROUP,
                SECURITY_VERSIONS,
                request_authentication_pb2.RequestAuthentication,
            ),
            _kind("Telemetry", TELEMETRY_GROUP, TELEMETRY_VERSIONS, telemetry_pb2.Telemetry),
        ]
    )
)


# Error text is bounded: a message quotes at most a short prefix of a value, so a
# small file cannot make a huge error line (an alias-expanded value, a 4 MiB string).
MAX_MESSAGE_CHARS = 1000
MAX_FIELD_CHARS = 300
_QUOTE = reprlib.Repr()
_QUOTE.maxstring = 80
_QUOTE.maxother = 80
_QUOTE.maxlong = 40
_QUOTE.maxlist = _QUOTE.maxtuple = _QUOTE.maxset = _QUOTE.maxdict = 4
_QUOTE.maxlevel = 2


def quote(value: object) -> str:
    """repr() of a user's value for an error message, at most ~80 characters."""
    try:
        return _QUOTE.repr(value)
    except Exception:  # a value whose repr fails still gets a message
        return f"<{type(value).__name__}>"


def clip(text: str, limit: int = 80) -> str:
    """A prefix of user-supplied text (a key, a host) for an error message."""
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} characters)"


@dataclass(frozen=True)
class ConfigError:
    """A problem a user can fix, located by file, document, resource and field.

    Message and field are clipped at construction, whatever produced them."""

    source: str
    doc_index: int
    message: str
    kind: str = ""
    namespace: str = ""
    name: str = ""
    field: str = ""
    line: int | None = None

    def __post_init__(self) -> None:
        limits = {"message": MAX_MESSAGE_CHARS, "field": MAX_FIELD_CHARS, "name": 253, "namespace": 253, "kind": 80}
        for name, limit in limits.items():
            value = getattr(self, name)
            if len(value) > limit:
                object.__setattr__(self, name, clip(value, limit))

    def __str__(self) -> str:
        where = self.source
        where += f":{self.line}" if self.line is not None else f" (document {self.doc_index})"
        parts = [where]
        if self.kind:
            resource = f"{self.namespace}/{self.name}" if self.name else "(unnamed)"
            parts.append(f"{self.kind} {resource}")
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)


@dataclass(frozen=True)
class SourceUnavailable(ConfigError):
    """A whole source (the config directory) cannot be read right now; what it
    served before keeps serving. /ready and /debug/configz report it."""

    since: float = 0.0
