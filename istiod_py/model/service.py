"""Service discovery model: services, their ports, and the endpoints behind them.

These are plain immutable values. Sources (file registry, Kubernetes) build them;
translation only reads them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

EMPTY_LABELS: Mapping[str, str] = MappingProxyType({})


class Protocol(enum.Enum):
    HTTP = "HTTP"
    HTTP2 = "HTTP2"
    GRPC = "GRPC"
    HTTPS = "HTTPS"
    TLS = "TLS"
    TCP = "TCP"
    MONGO = "MONGO"
    REDIS = "REDIS"
    MYSQL = "MYSQL"
    UNSUPPORTED = "UNSUPPORTED"

    @property
    def is_http(self) -> bool:
        return self in (Protocol.HTTP, Protocol.HTTP2, Protocol.GRPC)

    @property
    def is_http2(self) -> bool:
        return self in (Protocol.HTTP2, Protocol.GRPC)


_PREFIXES: tuple[tuple[str, Protocol], ...] = (
    ("grpc-web", Protocol.HTTP),
    ("grpc", Protocol.GRPC),
    ("http2", Protocol.HTTP2),
    ("https", Protocol.HTTPS),
    ("http", Protocol.HTTP),
    ("h2c", Protocol.HTTP2),
    ("tls", Protocol.TLS),
    ("tcp", Protocol.TCP),
    ("mongo", Protocol.MONGO),
    ("redis", Protocol.REDIS),
    ("mysql", Protocol.MYSQL),
)

_APP_PROTOCOLS: Mapping[str, Protocol] = {
    "http": Protocol.HTTP,
    "http2": Protocol.HTTP2,
    "h2c": Protocol.HTTP2,
    "kubernetes.io/h2c": Protocol.HTTP2,
    "grpc": Protocol.GRPC,
    "grpc-web": Protocol.HTTP,
    "https": Protocol.HTTPS,
    "tls": Protocol.TLS,
    "tcp": Protocol.TCP,
    "mongo": Protocol.MONGO,
    "redis": Protocol.REDIS,
    "mysql": Protocol.MYSQL,
}


def protocol_from(declared: str = "", app_protocol: str = "", port_name: str = "") -> Protocol:
    """Pick a port's protocol the way Istio does: appProtocol, then the declared
    protocol (ServiceEntry), then the port name prefix (`http-web`, `grpc`), else TCP.

    Kubernetes' `protocol: TCP` is a transport, not an application protocol, so it
    does not stop name-based detection.
    """
    if app_protocol:
        proto = _APP_PROTOCOLS.get(app_protocol.lower())
        if proto is not None:
            return proto
    if declared and declared.upper() not in ("", "TCP", "UDP", "SCTP"):
        try:
            return Protocol(declared.upper())
        except ValueError:
            return Protocol.UNSUPPORTED
    name = port_name.lower()
    for prefix, proto in _PREFIXES:
        if name == prefix or name.startswith(prefix + "-"):
            return proto
    if declared.upper() == "TCP" and not port_name:
        return Protocol.TCP
    return Protocol.TCP


class Resolution(enum.Enum):
    NONE = "NONE"
    STATIC = "STATIC"
    DNS = "DNS"
    DNS_ROUND_ROBIN = "DNS_ROUND_ROBIN"


@dataclass(frozen=True, slots=True)
class Port:
    name: str
    number: int
    protocol: Protocol
    target_port: int = 0  # 0: same as number (or taken from the endpoint)


@dataclass(frozen=True, slots=True)
class Service:
    """A service as a client sees it: a hostname and ports.

    `hostname` is fully qualified (`reviews.default.svc.cluster.local`)."""

    hostname: str
    namespace: str
    ports: tuple[Port, ...]
    addresses: tuple[str, ...] = ()
    resolution: Resolution = Resolution.STATIC
    mesh_external: bool = False
    labels: Mapping[str, str] = field(default_factory=lambda: EMPTY_LABELS, compare=False, hash=False)
    selector: Mapping[str, str] | None = field(default=None, compare=False, hash=False)
    export_to: tuple[str, ...] = ()  # empty: public ("*")
    source: str = ""  # "ServiceEntry default/foo" or "Service default/reviews"
    subject_alt_names: tuple[str, ...] = ()
    # A Kubernetes Service with `clusterIP: None` (istiod's Passthrough resolution),
    # not merely one whose cluster IP the file leaves out.
    headless: bool = False

    def port(self, number: int) -> Port | None:
        for p in self.ports:
            if p.number == number:
                return p
        return None

    def port_by_name(self, name: str) -> Port | None:
        for p in self.ports:
            if p.name == name:
                return p
        return None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One instance of a service port: an address and the port to send to."""

    service: str  # hostname
    service_port: int  # the service port number this endpoint serves
    address: str
    port: int
    labels: Mapping[str, str] = field(default_factory=lambda: EMPTY_LABELS, compare=False, hash=False)
    labels_key: tuple[tuple[str, str], ...] = ()  # sorted labels: for equality and hashing
    locality: str = ""  # region/zone/subzone
    weight: int = 1
    service_account: str = ""
    namespace: str = ""
    workload_name: str = ""
    # "istio" when the workload runs a sidecar that accepts mutual TLS; "" otherwise.
    tls_mode: str = ""
    healthy: bool = True

    @staticmethod
    def make(
        service: str,
        service_port: int,
        address: str,
        port: int,
        labels: Mapping[str, str] | None = None,
        **kw: object,
    ) -> Endpoint:
        lbl = dict(labels or {})
        return Endpoint(
            service,
            service_port,
            address,
            port,
            MappingProxyType(lbl),
            tuple(sorted(lbl.items())),
            **kw,  # type: ignore[arg-type]
        )


def labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())
