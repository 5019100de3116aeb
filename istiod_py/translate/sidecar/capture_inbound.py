"""`virtualInbound` (0.0.0.0:15006): the one listener that receives every inbound
connection iptables redirects, as istiod builds it.

Chains, in istiod's order:
- `virtualInbound-blackhole`: the original destination is 15006 itself (a loop);
- the passthrough chains for ports no service declares, split by protocol
  sniffing and by PeerAuthentication: `virtualInbound-catchall-http` (HCM to
  `InboundPassthroughCluster`) and `virtualInbound` (tcp_proxy to it);
- per service port (or Sidecar ingress port), chains matched on
  `destination_port`, named `0.0.0.0_PORT`: the same chains the captureMode
  NONE inbound listener gets (listeners.inbound_listener, mtls.apply_inbound),
  with plaintext ones pinned to `raw_buffer`.

Listener filters: original_dst (original_src too under TPROXY), then
tls_inspector and http_inspector, each switched off by a destination-port
predicate on ports whose chains do not need it: without the TLS inspector a
connection counts as `raw_buffer`, so a plaintext-only port never waits on it."""

from __future__ import annotations

from dataclasses import replace

from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.listener.v3.listener_components_pb2 import FilterChain
from envoy.extensions.filters.listener.http_inspector.v3 import http_inspector_pb2
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2
from envoy.extensions.filters.listener.original_src.v3 import original_src_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.type.v3 import range_pb2

from istiod_py.model import Proxy
from istiod_py.model.service import Port, Protocol

from .. import naming
from ..clusters import socket_address
from ..context import IngressListener, PushContext, SidecarScope
from ..features import extra_network_filters
from ..hcm import HCM_NAME, TCP_PROXY_NAME, http_connection_manager
from ..security import mtls
from ..security import peer_authentication as pa
from ..security.peer_authentication import MTLSMode
from . import listeners as lds
from . import protocols
from .routes import inbound_route_config

INBOUND_CAPTURE_PORT = 15006
WILDCARD = "0.0.0.0"
BLACKHOLE_CHAIN = "virtualInbound-blackhole"
CATCHALL_HTTP_CHAIN = "virtualInbound-catchall-http"
ORIGINAL_DST = "envoy.filters.listener.original_dst"
ORIGINAL_SRC = "envoy.filters.listener.original_src"
TPROXY_MARK = 1337
# ALPNs of HTTP that a client sidecar sent over mTLS (istio.alpn sets them).
MTLS_HTTP_ALPNS = ("istio-http/1.0", "istio-http/1.1", "istio-h2")
MTLS_TCP_ALPNS = ("istio-peer-exchange", "istio")
HTTP_DETECTED = frozenset({"http/1.1", "h2c"})


def captured_inbound_ports(ctx: PushContext, proxy: Proxy, scope: SidecarScope) -> list[IngressListener]:
    """The ports virtualInbound has chains for. Service-derived ports go to the
    original destination (empty default endpoint), not 127.0.0.1: with capture
    the app listens where it would without a sidecar. A Kubernetes service port
    that declares no protocol (name without a protocol prefix, no appProtocol)
    is marked UNSUPPORTED: its chains sniff, as istiod's "auto" ports."""
    ports = lds.inbound_ports(ctx, proxy, scope)
    if scope.ingress:
        out = []
        for i in ports:
            if i.capture_none:
                # A listener of its own that binds the port: to the given endpoint, else 127.0.0.1.
                out.append(replace(i, default_endpoint=i.default_endpoint or f"127.0.0.1:{i.port.number}"))
            elif i.default_endpoint.startswith(f"{WILDCARD}:"):
                out.append(_original(i))
            else:
                out.append(i)
        return out
    undeclared = _undeclared_ports(ctx, proxy)
    out = []
    for i in ports:
        port = i.port
        if port.number in undeclared:
            port = Port(port.name, port.number, Protocol.UNSUPPORTED, port.target_port)
        out.append(IngressListener(port, "", ""))
    return out


def _undeclared_ports(ctx: PushContext, proxy: Proxy) -> set[int]:
    """Target ports of this proxy's endpoints whose service port declares no protocol."""
    out: set[int] = set()
    for ep in ctx.state.endpoints_by_address.get(proxy.ip, ()):
        svc = ctx.state.services.get(ep.service)
        sport = svc.port(ep.service_port) if svc is not None else None
        if svc is not None and sport is not None and protocols.undeclared(svc, sport):
            out.add(ep.port)
    return out


def _original(ing: IngressListener) -> IngressListener:
    return IngressListener(ing.port, "", "")


def _tcp_proxy_chain(name: str, cluster: str, pre: list[listener_components_pb2.Filter]) -> FilterChain:
    fc = FilterChain(name=name)
    fc.filters.extend(pre)
    fc.filters.add(name=TCP_PROXY_NAME).typed_config.Pack(tcp_proxy_pb2.TcpProxy(stat_prefix=cluster, cluster=cluster))
    return fc


def _blackhole_chain() -> FilterChain:
    fc = _tcp_proxy_chain(BLACKHOLE_CHAIN, naming.BLACKHOLE, [])
    fc.filter_chain_match.destination_port.value = INBOUND_CAPTURE_PORT
    return fc


def _match(fc: FilterChain, transport: str, alpns: tuple[str, ...] = ()) -> FilterChain:
    fc.filter_chain_match.transport_protocol = transport
    fc.filter_chain_match.application_protocols.extend(alpns)
    return fc


def _tls(fc: FilterChain, http: bool, trust_domains: tuple[str, ...]) -> FilterChain:
    fc.transport_socket.name = mtls.TLS_SOCKET
    fc.transport_socket.typed_config.Pack(mtls.downstream_tls_context(http, trust_domains))
    return fc


def sniffing_chains(
    ctx: PushContext,
    proxy: Proxy,
    *,
    port: int,
    cluster: str,
    http_name: str,
    tcp_name: str,
    http_stat: str,
    passthrough: bool = False,
) -> list[FilterChain]:
    """istiod's chains for a protocol it must detect: HTTP (HCM) when the client
    sidecar's ALPN or the http_inspector says HTTP, TCP otherwise; which of them
    take mTLS, plaintext or both follows the port's PeerAuthentication mode.
    Port 0: the passthrough chains (no destination port match)."""
    mode = mtls.inbound_mode(ctx, proxy, port)
    pre = extra_network_filters(ctx, proxy, "inbound", port)
    tds = mtls.validation_trust_domains(ctx)

    def http() -> FilterChain:
        route = inbound_route_config(0 if passthrough else port, cluster)
        if passthrough:
            route.name = cluster
        manager = http_connection_manager(ctx, proxy, "inbound", port, http_stat, route_config=route)
        mtls.forward_client_cert(manager)
        fc = FilterChain(name=http_name)
        fc.filters.add(name=HCM_NAME).typed_config.Pack(manager)
        return fc

    def tcp() -> FilterChain:
        return _tcp_proxy_chain(tcp_name, cluster, pre)

    if mode == MTLSMode.STRICT:
        chains = [_tls(_match(http(), "tls", MTLS_HTTP_ALPNS), True, tds), _tls(_match(tcp(), "tls"), False, tds)]
    elif mode == MTLSMode.PERMISSIVE:
        chains = [
            _tls(_match(http(), "tls", MTLS_HTTP_ALPNS), True, tds),
            _match(http(), "raw_buffer", lds.PLAINTEXT_HTTP_ALPNS[1:]),
            _tls(_match(tcp(), "tls", MTLS_TCP_ALPNS), False, tds),
            _match(tcp(), "raw_buffer"),
            _match(tcp(), "tls"),  # TLS the app itself terminates: passed through
        ]
    else:
        chains = [_match(http(), "raw_buffer", lds.PLAINTEXT_HTTP_ALPNS[1:]), _match(tcp(), "raw_buffer")]
    if port:
        for fc in chains:
            fc.filter_chain_match.destination_port.value = port
    return chains


def passthrough_chains(ctx: PushContext, proxy: Proxy, declared: set[int]) -> list[FilterChain]:
    """Chains for traffic to ports no service declares, per the workload's mTLS mode;
    as istiod, a port-level PeerAuthentication mode on such a port gets passthrough
    chains of its own (matched on that port) when it differs from the workload's."""
    cluster = naming.INBOUND_PASSTHROUGH
    chains = []
    base = mtls.inbound_mode(ctx, proxy, 0)
    ports = [0]
    if mtls.sds_capable(proxy):
        port_modes = pa.workload_policy(ctx, proxy.namespace, proxy.labels).ports
        ports += sorted(p for p in port_modes if p not in declared and mtls.inbound_mode(ctx, proxy, p) != base)
    for port in ports:
        chains += sniffing_chains(
            ctx, proxy, port=port, cluster=cluster, http_name=CATCHALL_HTTP_CHAIN, tcp_name=naming.VIRTUAL_INBOUND,
            http_stat=cluster, passthrough=True,
        )  # fmt: skip
    return chains


def port_chains(ctx: PushContext, proxy: Proxy, ing: IngressListener) -> list[FilterChain]:
    """The chains of one service or Sidecar ingress port, matched on its destination port."""
    port = ing.port.number
    name = naming.listener(WILDCARD, port)
    if ing.port.protocol == Protocol.UNSUPPORTED:
        # No declared protocol: sniffed, as istiod's protocol "auto".
        return sniffing_chains(
            ctx, proxy, port=port, cluster=naming.inbound_cluster(port), http_name=name, tcp_name=name,
            http_stat=f"inbound_{name}",
        )  # fmt: skip
    single = lds.inbound_listener(ctx, proxy, IngressListener(ing.port, WILDCARD, ing.default_endpoint))
    out = []
    for fc in single.filter_chains:
        fc.name = name
        fc.filter_chain_match.destination_port.value = port
        if not fc.filter_chain_match.transport_protocol:
            fc.filter_chain_match.transport_protocol = "raw_buffer"
        out.append(fc)
    mode = mtls.inbound_mode(ctx, proxy, port)
    if mode == MTLSMode.PERMISSIVE and not ing.port.protocol.is_http:
        # Non-mesh TLS to an opaque port is passed through to the app, as istiod does.
        plain = FilterChain()
        plain.CopyFrom(out[-1])
        plain.filter_chain_match.transport_protocol = "tls"
        out.append(plain)
    return out


def _port_range(port: int) -> listener_components_pb2.ListenerFilterChainMatchPredicate:
    return listener_components_pb2.ListenerFilterChainMatchPredicate(
        destination_port_range=range_pb2.Int32Range(start=port, end=port + 1)
    )


def _exclude_ports(ports: list[int]) -> listener_components_pb2.ListenerFilterChainMatchPredicate:
    """True (filter disabled) on any of `ports`."""
    rules = [_port_range(p) for p in ports]
    if len(rules) == 1:
        return rules[0]
    pred = listener_components_pb2.ListenerFilterChainMatchPredicate()
    pred.or_match.rules.extend(rules)
    return pred


def _inspectors(chains: list[FilterChain]) -> dict[int, tuple[bool, bool]]:
    """destination port (0: no port) -> (needs TLS inspector, needs HTTP inspector)."""
    out: dict[int, tuple[bool, bool]] = {}
    for fc in chains:
        m = fc.filter_chain_match
        port = m.destination_port.value if m.HasField("destination_port") else 0
        tls, http = out.get(port, (False, False))
        out[port] = (
            tls or m.transport_protocol == "tls",
            http or any(a in HTTP_DETECTED for a in m.application_protocols),
        )
    return out


def listener_filters(proxy: Proxy, chains: list[FilterChain]) -> list[listener_components_pb2.ListenerFilter]:
    out = []
    f = listener_components_pb2.ListenerFilter(name=ORIGINAL_DST)
    f.typed_config.Pack(original_dst_pb2.OriginalDst())
    out.append(f)
    if proxy.interception_mode == "TPROXY":
        f = listener_components_pb2.ListenerFilter(name=ORIGINAL_SRC)
        f.typed_config.Pack(original_src_pb2.OriginalSrc(mark=TPROXY_MARK))
        out.append(f)
    need = _inspectors(chains)
    if any(t for t, _ in need.values()):
        f = listener_components_pb2.ListenerFilter(name=lds.TLS_INSPECTOR)
        f.typed_config.Pack(tls_inspector_pb2.TlsInspector())
        default_on = need.get(0, (False, False))[0]
        if default_on:
            off = sorted(p for p, (t, _) in need.items() if p and not t)
            if off:
                f.filter_disabled.CopyFrom(_exclude_ports(off))
        else:
            on = sorted(p for p, (t, _) in need.items() if p and t)
            if on:
                f.filter_disabled.not_match.CopyFrom(_exclude_ports(on))
        out.append(f)
    if any(h for _, h in need.values()):
        # After the TLS inspector: a connection it marks `tls` is not sniffed for HTTP.
        f = listener_components_pb2.ListenerFilter(name=lds.HTTP_INSPECTOR)
        f.typed_config.Pack(http_inspector_pb2.HttpInspector())
        off = sorted(p for p, (_, h) in need.items() if not h)
        if off:
            f.filter_disabled.CopyFrom(_exclude_ports(off))
        out.append(f)
    return out


def virtual_inbound(ctx: PushContext, proxy: Proxy, ports: list[IngressListener]) -> listener_pb2.Listener:
    lst = listener_pb2.Listener(name=naming.VIRTUAL_INBOUND, address=socket_address(WILDCARD, INBOUND_CAPTURE_PORT))
    lst.traffic_direction = 1  # INBOUND
    lst.continue_on_listener_filters_timeout = True
    # istiod's protocolDetectionTimeout default (0s): no timeout, so a
    # server-first protocol on an undeclared port waits for the client's bytes.
    lst.listener_filters_timeout.SetInParent()
    if proxy.interception_mode == "TPROXY":
        lst.transparent.value = True
    declared = {i.port.number for i in ports if not i.capture_none}
    chains = [_blackhole_chain(), *passthrough_chains(ctx, proxy, declared)]
    for ing in sorted(ports, key=lambda i: i.port.number):
        if not ing.capture_none:
            chains += port_chains(ctx, proxy, ing)
    lst.filter_chains.extend(chains)
    lst.listener_filters.extend(listener_filters(proxy, chains))
    return lst
