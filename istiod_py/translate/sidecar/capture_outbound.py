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
from ..hcm import TCP_PROXY_NAME
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


def outbound_listeners(ctx: PushContext, proxy: Proxy, scope: SidecarScope) -> list[listener_pb2.Listener]:
    """The per-port outbound listeners (with fallthrough) and virtualOutbound."""
    out = lds.outbound_listeners(ctx, proxy, scope)
    for lst in out:
        add_fallthrough(lst, scope)
    out.append(virtual_outbound(proxy, scope))
    return out
