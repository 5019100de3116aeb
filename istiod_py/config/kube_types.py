"""Kubernetes Service and EndpointSlice, parsed strictly from YAML into frozen dataclasses.

Fields Kubernetes defines but the mesh does not use (sessionAffinity, ipFamilies,
status, ...) are accepted and dropped; anything else is an error, as a typo would be.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from istiod_py.config.model import quote

SERVICE_NAME_LABEL = "kubernetes.io/service-name"

_OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "namespace",
        "labels",
        "annotations",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generateName",
        "managedFields",
        "ownerReferences",
        "finalizers",
        "selfLink",
    }
)
_SERVICE_SPEC_FIELDS = frozenset(
    {
        "ports",
        "selector",
        "clusterIP",
        "clusterIPs",
        "type",
        "externalName",
        "externalIPs",
        "sessionAffinity",
        "sessionAffinityConfig",
        "loadBalancerIP",
        "loadBalancerSourceRanges",
        "loadBalancerClass",
        "externalTrafficPolicy",
        "internalTrafficPolicy",
        "healthCheckNodePort",
        "publishNotReadyAddresses",
        "ipFamilies",
        "ipFamilyPolicy",
        "allocateLoadBalancerNodePorts",
        "trafficDistribution",
    }
)
_SERVICE_PORT_FIELDS = frozenset({"name", "protocol", "appProtocol", "port", "targetPort", "nodePort"})
_ENDPOINT_FIELDS = frozenset(
    {"addresses", "conditions", "hostname", "targetRef", "nodeName", "zone", "hints", "deprecatedTopology"}
)
_CONDITION_FIELDS = frozenset({"ready", "serving", "terminating"})
_TARGET_REF_FIELDS = frozenset({"kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath"})
_SLICE_PORT_FIELDS = frozenset({"name", "protocol", "appProtocol", "port"})
_PROTOCOLS = frozenset({"TCP", "UDP", "SCTP"})
_SERVICE_TYPES = frozenset({"ClusterIP", "NodePort", "LoadBalancer", "ExternalName"})
_ADDRESS_TYPES = frozenset({"IPv4", "IPv6", "FQDN"})


class KubeParseError(ValueError):
    """A Kubernetes object that does not match its schema; `path` locates the field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True)
class ObjectMeta:
    name: str
    namespace: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]


@dataclass(frozen=True)
class ServicePort:
    port: int
    name: str = ""
    protocol: str = "TCP"
    target_port: int | str | None = None
    app_protocol: str | None = None
    node_port: int | None = None


@dataclass(frozen=True)
class KubeService:
    meta: ObjectMeta
    ports: tuple[ServicePort, ...]
    selector: Mapping[str, str]
    type: str = "ClusterIP"
    cluster_ip: str | None = None
    external_name: str | None = None

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def namespace(self) -> str:
        return self.meta.namespace


@dataclass(frozen=True)
class EndpointConditions:
    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None


@dataclass(frozen=True)
class ObjectReference:
    kind: str = ""
    namespace: str = ""
    name: str = ""
    uid: str = ""


@dataclass(frozen=True)
class Endpoint:
    addresses: tuple[str, ...]
    conditions: EndpointConditions
    hostname: str | None = None
    node_name: str | None = None
    zone: str | None = None
    target_ref: ObjectReference | None = None


@dataclass(frozen=True)
class EndpointPort:
    name: str = ""
    port: int | None = None
    protocol: str = "TCP"
    app_protocol: str | None = None


@dataclass(frozen=True)
class EndpointSlice:
    meta: ObjectMeta
    service_name: str
    address_type: str
    endpoints: tuple[Endpoint, ...]
    ports: tuple[EndpointPort, ...]

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def namespace(self) -> str:
        return self.meta.namespace


# Typed accessors: each checks one value and names its path on failure. ----------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _mapping(value: Any, path: str, allowed: frozenset[str] | None = None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise KubeParseError(path, f"expected a mapping, got {type(value).__name__}")
    if allowed is not None:
        for key in value:
            if key not in allowed:
                raise KubeParseError(_join(path, key), f"unknown field '{key}' (known: {', '.join(sorted(allowed))})")
    return value


def _list(obj: dict[str, Any], key: str, path: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise KubeParseError(_join(path, key), f"expected a list, got {type(value).__name__}")
    return value


def _opt_str(obj: dict[str, Any], key: str, path: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise KubeParseError(_join(path, key), f"expected a string, got {type(value).__name__}; quote it")
    return value


def _req_str(obj: dict[str, Any], key: str, path: str) -> str:
    value = _opt_str(obj, key, path)
    if not value:
        raise KubeParseError(_join(path, key), f"'{key}' is required")
    return value


def _opt_bool(obj: dict[str, Any], key: str, path: str) -> bool | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, bool):
        raise KubeParseError(_join(path, key), f"expected true or false, got {quote(value)}")
    return value


def _port_number(value: Any, path: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise KubeParseError(path, f"expected a port number 1-65535, got {quote(value)}")
    return value


def _opt_port(obj: dict[str, Any], key: str, path: str) -> int | None:
    value = obj.get(key)
    return None if value is None else _port_number(value, _join(path, key))


def _string_map(obj: dict[str, Any], key: str, path: str) -> Mapping[str, str]:
    value = obj.get(key)
    if value is None:
        return MappingProxyType({})
    _mapping(value, _join(path, key))
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise KubeParseError(f"{path}.{key}[{k}]", f"keys and values must be strings, got {quote(v)}; quote it")
    return MappingProxyType(dict(value))


def _enum(obj: dict[str, Any], key: str, path: str, allowed: frozenset[str], default: str) -> str:
    value = _opt_str(obj, key, path) or default
    if value not in allowed:
        choices = ", ".join(sorted(allowed))
        raise KubeParseError(_join(path, key), f"invalid value {quote(value)}: must be one of {choices}")
    return value


# Objects ---------------------------------------------------------------------------------


def parse_object_meta(value: Any, default_namespace: str) -> ObjectMeta:
    meta = _mapping(value, "metadata", _OBJECT_META_FIELDS)
    return ObjectMeta(
        name=_req_str(meta, "name", "metadata"),
        namespace=_opt_str(meta, "namespace", "metadata") or default_namespace,
        labels=_string_map(meta, "labels", "metadata"),
        annotations=_string_map(meta, "annotations", "metadata"),
    )


def _target_port(value: Any, path: str) -> int | str | None:
    if value is None or isinstance(value, str):
        return value or None
    return _port_number(value, path)


def _service_port(value: Any, path: str) -> ServicePort:
    p = _mapping(value, path, _SERVICE_PORT_FIELDS)
    if "port" not in p:
        raise KubeParseError(f"{path}.port", "'port' is required")
    return ServicePort(
        port=_port_number(p["port"], f"{path}.port"),
        name=_opt_str(p, "name", path) or "",
        protocol=_enum(p, "protocol", path, _PROTOCOLS, "TCP"),
        target_port=_target_port(p.get("targetPort"), f"{path}.targetPort"),
        app_protocol=_opt_str(p, "appProtocol", path),
        node_port=_opt_port(p, "nodePort", path),
    )


def parse_service(doc: dict[str, Any], default_namespace: str) -> KubeService:
    _mapping(doc, "", frozenset({"apiVersion", "kind", "metadata", "spec", "status"}))
    meta = parse_object_meta(doc.get("metadata"), default_namespace)
    spec = _mapping(doc.get("spec") or {}, "spec", _SERVICE_SPEC_FIELDS)
    ports = tuple(_service_port(p, f"spec.ports[{i}]") for i, p in enumerate(_list(spec, "ports", "spec")))
    svc_type = _enum(spec, "type", "spec", _SERVICE_TYPES, "ClusterIP")
    external_name = _opt_str(spec, "externalName", "spec")
    if svc_type == "ExternalName" and not external_name:
        raise KubeParseError("spec.externalName", "required when type is ExternalName")
    return KubeService(
        meta=meta,
        ports=ports,
        selector=_string_map(spec, "selector", "spec"),
        type=svc_type,
        cluster_ip=_opt_str(spec, "clusterIP", "spec"),
        external_name=external_name,
    )


def _endpoint(value: Any, path: str) -> Endpoint:
    e = _mapping(value, path, _ENDPOINT_FIELDS)
    addresses = _list(e, "addresses", path)
    if not addresses:
        raise KubeParseError(f"{path}.addresses", "at least one address is required")
    for i, a in enumerate(addresses):
        if not isinstance(a, str) or not a:
            raise KubeParseError(f"{path}.addresses[{i}]", f"expected an address string, got {quote(a)}")
    cond = _mapping(e.get("conditions") or {}, f"{path}.conditions", _CONDITION_FIELDS)
    cpath = f"{path}.conditions"
    ref_raw = e.get("targetRef")
    ref = None
    if ref_raw is not None:
        r = _mapping(ref_raw, f"{path}.targetRef", _TARGET_REF_FIELDS)
        rp = f"{path}.targetRef"
        ref = ObjectReference(
            kind=_opt_str(r, "kind", rp) or "",
            namespace=_opt_str(r, "namespace", rp) or "",
            name=_opt_str(r, "name", rp) or "",
            uid=_opt_str(r, "uid", rp) or "",
        )
    return Endpoint(
        addresses=tuple(addresses),
        conditions=EndpointConditions(
            ready=_opt_bool(cond, "ready", cpath),
            serving=_opt_bool(cond, "serving", cpath),
            terminating=_opt_bool(cond, "terminating", cpath),
        ),
        hostname=_opt_str(e, "hostname", path),
        node_name=_opt_str(e, "nodeName", path),
        zone=_opt_str(e, "zone", path),
        target_ref=ref,
    )


def _slice_port(value: Any, path: str) -> EndpointPort:
    p = _mapping(value, path, _SLICE_PORT_FIELDS)
    return EndpointPort(
        name=_opt_str(p, "name", path) or "",
        port=_opt_port(p, "port", path),
        protocol=_enum(p, "protocol", path, _PROTOCOLS, "TCP"),
        app_protocol=_opt_str(p, "appProtocol", path),
    )


def parse_endpoint_slice(doc: dict[str, Any], default_namespace: str) -> EndpointSlice:
    _mapping(doc, "", frozenset({"apiVersion", "kind", "metadata", "addressType", "endpoints", "ports"}))
    meta = parse_object_meta(doc.get("metadata"), default_namespace)
    service_name = meta.labels.get(SERVICE_NAME_LABEL)
    if not service_name:
        raise KubeParseError(
            "metadata.labels",
            f"label '{SERVICE_NAME_LABEL}' is required: set it to the owning Service's name",
        )
    if "addressType" not in doc:
        raise KubeParseError("addressType", "'addressType' is required (IPv4, IPv6 or FQDN)")
    return EndpointSlice(
        meta=meta,
        service_name=service_name,
        address_type=_enum(doc, "addressType", "", _ADDRESS_TYPES, ""),
        endpoints=tuple(_endpoint(e, f"endpoints[{i}]") for i, e in enumerate(_list(doc, "endpoints", ""))),
        ports=tuple(_slice_port(p, f"ports[{i}]") for i, p in enumerate(_list(doc, "ports", ""))),
    )
