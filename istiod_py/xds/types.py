"""xDS type URLs served over ADS and their message classes."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf.message import Message

PREFIX = "type.googleapis.com/"


class TypeUrl:
    CLUSTER = PREFIX + "envoy.config.cluster.v3.Cluster"
    ENDPOINT = PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
    LISTENER = PREFIX + "envoy.config.listener.v3.Listener"
    ROUTE = PREFIX + "envoy.config.route.v3.RouteConfiguration"
    SECRET = PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"

    # Make-before-break: clusters before the endpoints that warm them, listeners
    # before the routes they reference.
    PUSH_ORDER: tuple[str, ...] = (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET)
    # Types whose empty subscription means "everything" (wildcard).
    WILDCARD_TYPES: frozenset[str] = frozenset({CLUSTER, LISTENER})

    _CLASSES: dict[str, type[Message]] = {
        CLUSTER: cluster_pb2.Cluster,
        ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
        LISTENER: listener_pb2.Listener,
        ROUTE: route_pb2.RouteConfiguration,
        SECRET: secret_pb2.Secret,
    }

    SHORT: dict[str, str] = {
        CLUSTER: "CDS",
        ENDPOINT: "EDS",
        LISTENER: "LDS",
        ROUTE: "RDS",
        SECRET: "SDS",
    }

    @classmethod
    def known(cls, type_url: str) -> bool:
        return type_url in cls._CLASSES

    @classmethod
    def message_class(cls, type_url: str) -> type[Message]:
        return cls._CLASSES[type_url]
