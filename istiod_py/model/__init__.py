from .mesh import MeshConfig, MeshState, endpoint_digest
from .proxy import Proxy, ProxyError, ProxyType, parse_proxy
from .service import Endpoint, Port, Protocol, Resolution, Service, labels_match, protocol_from

__all__ = [
    "Endpoint",
    "MeshConfig",
    "MeshState",
    "Port",
    "Protocol",
    "Proxy",
    "ProxyError",
    "ProxyType",
    "Resolution",
    "Service",
    "endpoint_digest",
    "labels_match",
    "parse_proxy",
    "protocol_from",
]
