"""Matching and patching one resource per xDS type: clusters, listeners
(filter chains, network/HTTP/listener filters), route configurations."""

from __future__ import annotations

from collections.abc import Callable, MutableSequence
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

from istiod_py.model import Proxy, ProxyType

from .. import naming
from ..context import PushContext
from ..gateway.servers import port_map
from ..scope import host_matches
from .model import HCM, OP, PC, RA, REMOVED, ROUTE_LEVEL, A, CompiledPatch, Removed
from .values import merge

# --- clusters -----------------------------------------------------------------------


def _cluster_context(proxy: Proxy, name: str) -> int:
    if proxy.type == ProxyType.ROUTER:
        return PC.GATEWAY
    return PC.SIDECAR_INBOUND if name.startswith("inbound|") else PC.SIDECAR_OUTBOUND


def _cluster_match(c: cluster_pb2.Cluster, m: Any) -> bool:
    if m.name:
        return bool(m.name == c.name)
    parts = c.name.split("|")
    port, subset, host = 0, "", ""
    if len(parts) == 4:
        subset, host = parts[2], parts[3]
        port = int(parts[1]) if parts[1].isdigit() else 0
    if m.subset and m.subset != subset:
        return False
    if m.service and not (host and host_matches(m.service, host)):
        return False
    return not (m.port_number and m.port_number != port)


def patch_cluster(proxy: Proxy, c: cluster_pb2.Cluster, p: CompiledPatch) -> bool | Removed:
    if p.context not in (PC.ANY, _cluster_context(proxy, c.name)):
        return False
    if p.operation == OP.ADD or not _cluster_match(c, p.match.cluster):
        return False
    if p.operation == OP.REMOVE:
        return REMOVED
    assert p.value is not None
    if p.operation == OP.REPLACE:
        c.CopyFrom(p.value)
    else:
        merge(c, p.value)
    return True


# --- listeners ----------------------------------------------------------------------


def _listener_context(proxy: Proxy, lst: listener_pb2.Listener) -> int:
    if proxy.type == ProxyType.ROUTER:
        return PC.GATEWAY
    return PC.SIDECAR_INBOUND if lst.traffic_direction == 1 else PC.SIDECAR_OUTBOUND


# Captured sidecars' catch-all listeners: as istiod, a patch's listener portNumber
# selects their filter chains by destination port rather than the listener's own port.
_VIRTUAL = frozenset({naming.VIRTUAL_INBOUND, naming.VIRTUAL_OUTBOUND})


def _listener_match(lst: listener_pb2.Listener, m: Any, apply_to: int = A.LISTENER) -> bool:
    if m.name and m.name != lst.name:
        return False
    virtual = apply_to != A.LISTENER and lst.name in _VIRTUAL
    if m.port_number and not virtual and lst.address.socket_address.port_value != m.port_number:
        return False
    return not (m.listener_filter and all(f.name != m.listener_filter for f in lst.listener_filters))


def _unpack_hcm(f: lc.Filter) -> hcm_pb2.HttpConnectionManager | None:
    if f.name != HCM or not f.typed_config.type_url.endswith(".HttpConnectionManager"):
        return None
    m = hcm_pb2.HttpConnectionManager()
    f.typed_config.Unpack(m)
    return m


def _chain_match(fc: lc.FilterChain, m: Any) -> bool:
    fcm = fc.filter_chain_match
    if m.name and m.name != fc.name:
        return False
    if m.sni and m.sni not in fcm.server_names:
        return False
    if m.transport_protocol and m.transport_protocol != fcm.transport_protocol:
        return False
    if m.application_protocols and any(a not in fcm.application_protocols for a in m.application_protocols.split(",")):
        return False
    if m.destination_port and (
        not fcm.HasField("destination_port") or fcm.destination_port.value != m.destination_port
    ):
        return False
    if m.HasField("filter"):
        if m.filter.name and all(f.name != m.filter.name for f in fc.filters):
            return False
        if m.filter.HasField("sub_filter") and m.filter.sub_filter.name:
            found = False
            for f in fc.filters:
                h = _unpack_hcm(f)
                if h is not None and any(hf.name == m.filter.sub_filter.name for hf in h.http_filters):
                    found = True
            if not found:
                return False
    return True


def _virtual_port_match(lst: listener_pb2.Listener, fc: lc.FilterChain, lm: Any) -> bool:
    if lst.name not in _VIRTUAL or not lm.port_number:
        return True
    return bool(fc.filter_chain_match.destination_port.value == lm.port_number)


def _chains(lst: listener_pb2.Listener) -> list[lc.FilterChain]:
    out = list(lst.filter_chains)
    if lst.HasField("default_filter_chain"):
        out.append(lst.default_filter_chain)
    return out


def patch_listener(ctx: PushContext, proxy: Proxy, lst: listener_pb2.Listener, p: CompiledPatch) -> bool | Removed:
    lctx = _listener_context(proxy, lst)
    if p.context not in (PC.ANY, lctx):
        return False
    if p.apply_to in ROUTE_LEVEL:
        # Inline route configurations (sidecar inbound) get route patches too.
        changed = False
        for fc in _chains(lst):
            for f in fc.filters:
                h = _unpack_hcm(f)
                if h is None or not h.HasField("route_config"):
                    continue
                if patch_route_config(ctx, proxy, h.route_config, p, lctx):
                    f.typed_config.Pack(h)
                    changed = True
        return changed
    lm = p.match.listener
    if not _listener_match(lst, lm, p.apply_to):
        return False
    if p.apply_to == A.LISTENER:
        if p.operation == OP.REMOVE:
            return REMOVED
        if p.operation == OP.MERGE:
            assert p.value is not None
            merge(lst, p.value)
            return True
        return False  # ADD: handled once per proxy (_added_part)
    if p.apply_to == A.LISTENER_FILTER:
        return _list_op(lst.listener_filters, p, lambda f: f.name == lm.listener_filter, bool(lm.listener_filter))
    if p.apply_to == A.FILTER_CHAIN:
        if p.operation == OP.ADD:
            assert p.value is not None
            lst.filter_chains.append(p.value)
            return True
        changed = False
        for i in reversed(range(len(lst.filter_chains))):
            fc = lst.filter_chains[i]
            if _chain_match(fc, lm.filter_chain) and _virtual_port_match(lst, fc, lm):
                changed = True
                if p.operation == OP.REMOVE:
                    del lst.filter_chains[i]
                else:
                    assert p.value is not None
                    merge(fc, p.value)
        if (
            lst.HasField("default_filter_chain")
            and _chain_match(lst.default_filter_chain, lm.filter_chain)
            and _virtual_port_match(lst, lst.default_filter_chain, lm)
        ):
            changed = True
            if p.operation == OP.REMOVE:
                lst.ClearField("default_filter_chain")
            else:
                assert p.value is not None
                merge(lst.default_filter_chain, p.value)
        return changed
    changed = False
    fm = lm.filter_chain.filter
    for fc in _chains(lst):
        if not _chain_match(fc, lm.filter_chain) or not _virtual_port_match(lst, fc, lm):
            continue
        if p.apply_to == A.NETWORK_FILTER:
            changed |= _list_op(fc.filters, p, lambda f: f.name == fm.name, bool(fm.name))
            continue
        # HTTP_FILTER: inside the connection manager(s) of the chain
        sub = str(fm.sub_filter.name)

        def is_sub(hf: hcm_pb2.HttpFilter, sub: str = sub) -> bool:
            return bool(hf.name == sub)

        for f in fc.filters:
            if fm.name and fm.name != HCM:
                continue
            h = _unpack_hcm(f)
            if h is None:
                continue
            if _list_op(h.http_filters, p, is_sub, bool(sub)):
                f.typed_config.Pack(h)
                changed = True
    return changed


def _list_op(items: MutableSequence[Any], p: CompiledPatch, is_target: Callable[[Any], bool], has_target: bool) -> bool:
    """Istio's operations on a named list (filters, listener filters, routes).
    Without a target: INSERT_BEFORE is INSERT_FIRST, INSERT_AFTER is ADD, and
    MERGE/REMOVE/REPLACE apply to every item."""
    op = p.operation

    def clone() -> Any:
        assert p.value is not None
        v = type(p.value)()
        v.CopyFrom(p.value)
        return v

    if op == OP.ADD or (op == OP.INSERT_AFTER and not has_target):
        items.append(clone())
        return True
    if op == OP.INSERT_FIRST or (op == OP.INSERT_BEFORE and not has_target):
        items.insert(0, clone())
        return True
    targets = [i for i, it in enumerate(items) if not has_target or is_target(it)]
    if not targets:
        return False
    if op == OP.INSERT_BEFORE:
        items.insert(targets[0], clone())
    elif op == OP.INSERT_AFTER:
        items.insert(targets[0] + 1, clone())
    elif op == OP.REMOVE:
        for i in reversed(targets):
            del items[i]
    elif op == OP.REPLACE:
        for i in targets:
            items[i].CopyFrom(clone())
    elif op == OP.MERGE:
        assert p.value is not None
        for i in targets:
            merge(items[i], p.value)
    else:
        return False
    return True


# --- routes -------------------------------------------------------------------------


def route_context(proxy: Proxy, name: str) -> int:
    if proxy.type == ProxyType.ROUTER:
        return PC.GATEWAY
    return PC.SIDECAR_INBOUND if name.startswith("inbound|") else PC.SIDECAR_OUTBOUND


def _gateway_route_name(name: str) -> tuple[int, str, str]:
    """`http.8080` -> (8080, "", ""); `https.443.NAME.GW.NS` -> (443, NAME, "NS/GW")."""
    parts = name.split(".")
    port = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    if parts[0] == "https" and len(parts) >= 5:
        return port, parts[2], f"{parts[4]}/{parts[3]}"
    return port, "", ""


def _route_config_match(ctx: PushContext, proxy: Proxy, rcfg: route_pb2.RouteConfiguration, m: Any, rctx: int) -> bool:
    if m.name and m.name != rcfg.name:
        return False
    if rctx != PC.GATEWAY:
        if rcfg.name.startswith("inbound|"):
            seg = rcfg.name.split("|")[1]
        else:
            seg = rcfg.name
        port = int(seg) if seg.isdigit() else 0
        return not (m.port_number and m.port_number != port)
    port, port_name, gateway = _gateway_route_name(rcfg.name)
    if m.port_number and m.port_number != port and port_map(ctx, proxy).get(m.port_number) != port:
        return False
    if m.port_name and m.port_name != port_name:
        return False
    return not (m.gateway and m.gateway != gateway)


def _vhost_match(vh: rc.VirtualHost, m: Any) -> bool:
    if m.domain_name and m.domain_name not in vh.domains:
        return False
    return not (m.name and m.name != vh.name)


def _route_match(r: rc.Route, m: Any) -> bool:
    if m.name and m.name != r.name:
        return False
    action = r.WhichOneof("action")
    want = {RA.ROUTE: "route", RA.REDIRECT: "redirect", RA.DIRECT_RESPONSE: "direct_response"}.get(m.action)
    return want is None or action == want


def patch_route_config(
    ctx: PushContext, proxy: Proxy, rcfg: route_pb2.RouteConfiguration, p: CompiledPatch, rctx: int
) -> bool:
    if p.context not in (PC.ANY, rctx):
        return False
    rm = p.match.route_configuration
    if not _route_config_match(ctx, proxy, rcfg, rm, rctx):
        return False
    if p.apply_to == A.ROUTE_CONFIGURATION:
        assert p.value is not None
        merge(rcfg, p.value)
        return True
    if p.apply_to == A.VIRTUAL_HOST:
        if p.operation == OP.ADD:
            assert p.value is not None
            rcfg.virtual_hosts.append(p.value)
            return True
        changed = False
        for i in reversed(range(len(rcfg.virtual_hosts))):
            vh = rcfg.virtual_hosts[i]
            if rm.HasField("vhost") and not _vhost_match(vh, rm.vhost):
                continue
            changed = True
            if p.operation == OP.REMOVE:
                del rcfg.virtual_hosts[i]
            else:
                assert p.value is not None
                merge(vh, p.value)
        return changed
    # HTTP_ROUTE
    changed = False
    route_m = rm.vhost.route if rm.HasField("vhost") and rm.vhost.HasField("route") else None
    for vh in rcfg.virtual_hosts:
        if rm.HasField("vhost") and not _vhost_match(vh, rm.vhost):
            continue
        has_target = route_m is not None and (bool(route_m.name) or route_m.action != RA.ANY)
        changed |= _list_op(vh.routes, p, lambda r: route_m is None or _route_match(r, route_m), has_target)
    return changed
