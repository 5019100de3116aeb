"""`virtualOutbound` (0.0.0.0:15001) and the fallthrough of the per-port outbound
listeners, for a sidecar whose traffic iptables captures, as istiod builds them.

virtualOutbound binds the port iptables redirects outbound TCP to and, with
`use_original_dst`, hands each connection to the listener for its original
destination (`0.0.0.0_PORT`, built with bind_to_port false by
listeners.outbound_listeners). A connection whose port has no listener stays
here: `virtualOutbound-catchall-tcp` sends it to PassthroughCluster (its
original destination) under outboundTrafficPolicy ALLOW_ANY, or to
BlackHoleCluster under REGISTRY_ONLY; `virtualOutbound-blackhole` closes
connections aimed at 15001 itself.

Opaque (non-HTTP) services with an address of their own get a listener of their
own, `VIP_PORT` (bound to the VIP, bind_to_port false), as istiod builds them;
Envoy hands a connection to the exact VIP:PORT listener before 0.0.0.0:PORT.
A headless Kubernetes service (no cluster IP) gets one per endpoint, `IP_PORT`
(listeners.py gives its chains the endpoint addresses; see headless.py).

A per-port listener whose chains all match something (destination ranges of
services with addresses, or sniffed protocols) gets istiod's
`PassthroughFilterChain` as default chain, so a destination on that port that
no service claims is treated as on a port without a listener."""

from __future__ import annotations

from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from istiod_py.model import Proxy

from .. import naming
from ..clusters import socket_address
from ..context import PushContext, SidecarScope
from ..hcm import HCM_NAME, TCP_PROXY_NAME
from . import listeners as lds

OUTBOUND_CAPTURE_PORT = 15001
BLACKHOLE_CHAIN = "virtualOutbound-blackhole"
CATCHALL_CHAIN = "virtualOutbound-catchall-tcp"
PASSTHROUGH_CHAIN = "PassthroughFilterChain"


def catch_all_cluster(scope: SidecarScope) -> str:
    return naming.BLACKHOLE if scope.outbound_policy == "REGISTRY_ONLY" else naming.PASSTHROUGH


def _tcp_chain(name: str, cluster: str) -> listener_components_pb2.FilterChain:
    fc = listener_components_pb2.FilterChain(name=name)
    fc.filters.add(name=TCP_PROXY_NAME).typed_config.Pack(tcp_proxy_pb2.TcpProxy(stat_prefix=cluster, cluster=cluster))
    return fc


def virtual_outbound(proxy: Proxy, scope: SidecarScope) -> listener_pb2.Listener:
    lst = listener_pb2.Listener(name=naming.VIRTUAL_OUTBOUND, address=socket_address("0.0.0.0", OUTBOUND_CAPTURE_PORT))
    lst.use_original_dst.value = True
    lst.traffic_direction = 2  # OUTBOUND
    if proxy.interception_mode == "TPROXY":
        lst.transparent.value = True
    blackhole = _tcp_chain(BLACKHOLE_CHAIN, naming.BLACKHOLE)
    # Only a connection redirected from another port may leave: one sent to
    # 15001 itself would be passed through back here.
    blackhole.filter_chain_match.destination_port.value = OUTBOUND_CAPTURE_PORT
    lst.filter_chains.extend([blackhole, _tcp_chain(CATCHALL_CHAIN, catch_all_cluster(scope))])
    return lst


def add_fallthrough(lst: listener_pb2.Listener, scope: SidecarScope) -> None:
    empty = listener_components_pb2.FilterChainMatch()
    if all(fc.filter_chain_match != empty for fc in lst.filter_chains):
        lst.default_filter_chain.CopyFrom(_tcp_chain(PASSTHROUGH_CHAIN, catch_all_cluster(scope)))


def _own_address(fc: listener_components_pb2.FilterChain) -> list[str]:
    """The single addresses (/32, /128) an opaque chain matches; [] if it matches
    anything wider, or runs HTTP."""
    if any(f.name == HCM_NAME for f in fc.filters):
        return []
    ranges = fc.filter_chain_match.prefix_ranges
    full = {4: 32, 6: 128}
    out = []
    for r in ranges:
        version = 6 if ":" in r.address_prefix else 4
        if not r.HasField("prefix_len") or r.prefix_len.value != full[version]:
            return []
        out.append(r.address_prefix)
    return out


def split_address_listeners(lst: listener_pb2.Listener) -> list[listener_pb2.Listener]:
    """`0.0.0.0_PORT` -> itself (what is left of it) and one `ADDR_PORT` per address
    opaque chains match exactly."""
    sock = lst.address.socket_address
    if sock.address != "0.0.0.0" or any(f.name == HCM_NAME for fc in lst.filter_chains for f in fc.filters):
        # A listener with an HTTP chain sniffs: its address chains stay beside it.
        return [lst]
    port = sock.port_value
    keep: list[listener_components_pb2.FilterChain] = []
    by_addr: dict[str, list[listener_components_pb2.FilterChain]] = {}
    for fc in lst.filter_chains:
        addrs = _own_address(fc)
        if not addrs:
            keep.append(fc)
            continue
        for addr in addrs:
            c = listener_components_pb2.FilterChain()
            c.CopyFrom(fc)
            del c.filter_chain_match.prefix_ranges[:]
            if c.filter_chain_match.transport_protocol == "raw_buffer" and not c.filter_chain_match.server_names:
                c.filter_chain_match.ClearField("transport_protocol")  # only there to step aside from sniffing
            if c.filter_chain_match == listener_components_pb2.FilterChainMatch():
                c.ClearField("filter_chain_match")
            by_addr.setdefault(addr, []).append(c)
    if not by_addr:
        return [lst]
    out = []
    if keep:
        del lst.filter_chains[:]
        lst.filter_chains.extend(keep)
        out.append(lst)
    for addr, chains in by_addr.items():
        own = listener_pb2.Listener(name=naming.listener(addr, port), address=socket_address(addr, port))
        own.traffic_direction = lst.traffic_direction
        own.bind_to_port.value = False
        own.filter_chains.extend(chains)
        if any(c.filter_chain_match.server_names for c in chains):
            own.listener_filters.extend(f for f in lst.listener_filters if f.name == lds.TLS_INSPECTOR)
            own.continue_on_listener_filters_timeout = True
        out.append(own)
    return out


def outbound_listeners(ctx: PushContext, proxy: Proxy, scope: SidecarScope) -> list[listener_pb2.Listener]:
    """The per-port and per-address outbound listeners (with fallthrough) and virtualOutbound."""
    out: list[listener_pb2.Listener] = []
    for lst in lds.outbound_listeners(ctx, proxy, scope):
        out += split_address_listeners(lst)
    for lst in out:
        if lst.address.socket_address.address == "0.0.0.0":
            add_fallthrough(lst, scope)
    out.append(virtual_outbound(proxy, scope))
    return out
