"""EnvoyFilter patches compiled from the Istio resource: names for the
enums, what each applyTo accepts, and the compiled forms."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf.message import Message
from istio.networking.v1alpha3 import envoy_filter_pb2

from istiod_py.xds.types import TypeUrl

EF = envoy_filter_pb2.EnvoyFilter
A = EF.ApplyTo
OP = EF.Patch.Operation
PC = EF.PatchContext
RA = EF.RouteConfigurationMatch.RouteMatch.Action

HCM = "envoy.filters.network.http_connection_manager"
ROUTER = "envoy.filters.http.router"
TERMINAL_NETWORK_FILTERS = frozenset({HCM, "envoy.filters.network.tcp_proxy"})
TYPED_STRUCT_TYPES = frozenset(
    {"type.googleapis.com/udpa.type.v1.TypedStruct", "type.googleapis.com/xds.type.v3.TypedStruct"}
)

VALUE_TYPES: dict[int, type[Message]] = {
    A.LISTENER: listener_pb2.Listener,
    A.FILTER_CHAIN: lc.FilterChain,
    A.NETWORK_FILTER: lc.Filter,
    A.HTTP_FILTER: hcm_pb2.HttpFilter,
    A.LISTENER_FILTER: lc.ListenerFilter,
    A.ROUTE_CONFIGURATION: route_pb2.RouteConfiguration,
    A.VIRTUAL_HOST: rc.VirtualHost,
    A.HTTP_ROUTE: rc.Route,
    A.CLUSTER: cluster_pb2.Cluster,
}

_LIST_OPS = frozenset({OP.MERGE, OP.ADD, OP.REMOVE, OP.INSERT_BEFORE, OP.INSERT_AFTER, OP.INSERT_FIRST, OP.REPLACE})
ALLOWED_OPS: dict[int, frozenset[int]] = {
    A.LISTENER: frozenset({OP.MERGE, OP.ADD, OP.REMOVE}),
    A.FILTER_CHAIN: frozenset({OP.MERGE, OP.ADD, OP.REMOVE}),
    A.NETWORK_FILTER: _LIST_OPS,
    A.HTTP_FILTER: _LIST_OPS,
    A.LISTENER_FILTER: _LIST_OPS,
    A.ROUTE_CONFIGURATION: frozenset({OP.MERGE}),
    A.VIRTUAL_HOST: frozenset({OP.MERGE, OP.ADD, OP.REMOVE}),
    A.HTTP_ROUTE: _LIST_OPS - {OP.REPLACE},
    A.CLUSTER: frozenset({OP.MERGE, OP.ADD, OP.REMOVE, OP.REPLACE}),
}

LISTENER_LEVEL = frozenset({A.LISTENER, A.FILTER_CHAIN, A.NETWORK_FILTER, A.HTTP_FILTER, A.LISTENER_FILTER})
ROUTE_LEVEL = frozenset({A.ROUTE_CONFIGURATION, A.VIRTUAL_HOST, A.HTTP_ROUTE})
APPLIES_TO_TYPE: dict[str, frozenset[int]] = {
    TypeUrl.LISTENER: LISTENER_LEVEL | ROUTE_LEVEL,  # route patches also reach inline (inbound) route configs
    TypeUrl.ROUTE: ROUTE_LEVEL,
    TypeUrl.CLUSTER: frozenset({A.CLUSTER}),
}
ADDABLE = {TypeUrl.LISTENER: A.LISTENER, TypeUrl.CLUSTER: A.CLUSTER}


class PatchError(ValueError):
    """A patch that cannot be compiled or applied; the message says why."""


@dataclass(frozen=True, slots=True)
class CompiledPatch:
    key: tuple[str, int]  # ("ns/name", index in configPatches)
    apply_to: int
    context: int
    match: Any  # EnvoyFilter.EnvoyConfigObjectMatch
    operation: int
    value: Message | None
    version: re.Pattern[str] | None
    metadata: tuple[tuple[str, str], ...]

    @property
    def where(self) -> str:
        ns_name, index = self.key
        return f"EnvoyFilter {ns_name} configPatches[{index}] ({A.Name(self.apply_to)} {OP.Name(self.operation)})"


@dataclass(frozen=True, slots=True)
class CompiledFilter:
    key: str  # "ns/name"
    namespace: str
    priority: int
    selector: tuple[tuple[str, str], ...] | None
    patches: tuple[CompiledPatch, ...]


class Removed:
    """What a patch returns when it removes the whole resource."""


REMOVED = Removed()
