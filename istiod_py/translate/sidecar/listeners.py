"""LDS for sidecars: outbound listeners per egress port and inbound listeners to
the local app, following Istio's Sidecar `captureMode: NONE` semantics (each
listener binds a real address in 127.0.0.0/8)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.listener.http_inspector.v3 import http_inspector_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from istiod_py.cache.resources import Built
from istiod_py.model import Protocol, Proxy, Service
from istiod_py.model.service import Port

from .. import naming
from ..clusters import socket_address
from ..context import EgressListener, IngressListener, PushContext, SidecarScope
from ..features import extra_network_filters
from ..hcm import HCM_NAME, TCP_PROXY_NAME, http_connection_manager
from ..security import mtls
from ..telemetry.resolve import cache_key as telemetry_key
from . import headless, protocols
from .routes import inbound_route_config
from .tcproute import L4Chain, filter_chain, normalize_cidrs, tcp_chains, virtual_services_for
from .tlsroute import tls_chains

DEFAULT_NONE_BIND = "127.0.0.1"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
HTTP_INSPECTOR = "envoy.filters.listener.http_inspector"
PLAINTEXT_HTTP_ALPNS = ("http/1.0", "http/1.1", "h2c")


def _filter_chain_http(
    manager: hcm.HttpConnectionManager, pre: list[listener_components_pb2.Filter] | None = None
) -> listener_components_pb2.FilterChain:
    fc = listener_components_pb2.FilterChain()
    fc.filters.extend(pre or [])
    f = fc.filters.add(name=HCM_NAME)
    f.typed_config.Pack(manager)
    return fc


def _filter_chain_tcp(
    stat_prefix: str, cluster: str, pre: list[listener_components_pb2.Filter] | None = None
) -> listener_components_pb2.FilterChain:
    fc = listener_components_pb2.FilterChain()
    fc.filters.extend(pre or [])
    f = fc.filters.add(name=TCP_PROXY_NAME)
    f.typed_config.Pack(tcp_proxy_pb2.TcpProxy(stat_prefix=stat_prefix, cluster=cluster))
    return fc


def _listener(name: str, bind: str, port: int, direction: str) -> listener_pb2.Listener:
    lst = listener_pb2.Listener(name=name, address=socket_address(bind, port))
    lst.traffic_direction = 1 if direction == "inbound" else 2  # core.TrafficDirection INBOUND/OUTBOUND
    return lst


def _egress_ports(
    egress: EgressListener, services: tuple[Service, ...], proxy: Proxy | None = None
) -> list[tuple[int, bool]]:
    """(port, is_http) for one egress listener. An explicit Sidecar port wins;
    otherwise every service port in scope, HTTP if any service there speaks HTTP
    (or, for a captured `proxy`, may: protocols.py)."""
    if egress.port is not None:
        proto = egress.port.protocol
        if proto == Protocol.TCP and egress.port.name == "":
            proto = _port_protocol(egress.port.number, services)
        return [(egress.port.number, proto.is_http)]
    ports: dict[int, bool] = {}
    for svc in services:
        if not egress.hosts.allows(svc.namespace, svc.hostname):
            continue
        for p in svc.ports:
            ports[p.number] = ports.get(p.number, False) or p.protocol.is_http or protocols.sniffed(proxy, svc, p)
    return sorted(ports.items())


def _port_protocol(port: int, services: tuple[Service, ...]) -> Protocol:
    for svc in services:
        p = svc.port(port)
        if p is not None and p.protocol.is_http:
            return p.protocol
    return Protocol.TCP


def _listener_protocols(
    egress: EgressListener, port: int, services: tuple[Service, ...]
) -> list[tuple[Service, Protocol]]:
    """The services an egress listener sends to on `port`, sorted by hostname,
    each with the protocol the listener speaks to it: the Sidecar's port
    protocol when it names one, else the service port's."""
    explicit: Protocol | None = None
    if egress.port is not None and not (egress.port.protocol == Protocol.TCP and egress.port.name == ""):
        explicit = egress.port.protocol
    out = []
    for svc in services:
        sport = svc.port(port)
        if sport is None or not egress.hosts.allows(svc.namespace, svc.hostname):
            continue
        out.append((svc, explicit or sport.protocol))
    return out


def _sniffed_ranges(proxy: Proxy, port: int, targets: list[tuple[Service, Protocol]]) -> set[str]:
    out: set[str] = set()
    for svc, _ in targets:
        sport = svc.port(port)
        if sport is not None and protocols.sniffed(proxy, svc, sport):
            out.update(normalize_cidrs(svc.addresses))
    return out


def _wildcard(bind: str) -> bool:
    return bind in ("0.0.0.0", "::")


def _l4_specs(
    ctx: PushContext, proxy: Proxy, port: int, bind: str, targets: list[tuple[Service, Protocol]]
) -> list[L4Chain]:
    """Filter chain specs of every non-HTTP service on the port, in hostname order.

    A listener bound to one address (captureMode NONE) cannot tell services
    apart by destination address: their plain TCP chains all match everything,
    and the first by hostname keeps it (istiod keeps the first by creation time,
    then name; names are what we have). TLS services are still told apart by SNI.
    On a wildcard listener, services with addresses (ServiceEntry addresses,
    cluster IPs) match their own destination prefix ranges."""
    specs: list[L4Chain] = []
    for svc, proto in targets:
        if proto.is_http:
            continue
        # A headless service has no address: captured proxies match its endpoints' (headless.py).
        addresses = svc.addresses or headless.endpoint_addresses(ctx, proxy, svc, port)
        cidrs = normalize_cidrs(addresses) if _wildcard(bind) else ()
        vss = virtual_services_for(ctx, svc, proxy.namespace)
        if proto in (Protocol.TLS, Protocol.HTTPS):
            # istiod matches SNI unless the service has an address of its own (not a CIDR).
            own_vip = bool(cidrs) and all("/" not in a for a in svc.addresses)
            specs += tls_chains(ctx, proxy, svc, port, cidrs, sni_for_default=not own_vip, vss=vss)
        specs += tcp_chains(ctx, proxy, svc, port, cidrs, vss=vss)
    return specs


def dedupe_chains(specs: list[L4Chain]) -> list[L4Chain]:
    """Envoy rejects a listener where two chains match the same (destination
    range, SNI): an earlier chain keeps each pair; a later one keeps what is left
    (narrowed), or is dropped."""
    used: set[tuple[str, str]] = set()
    out = []
    for spec in specs:
        ranges = spec.prefix_ranges or ("",)
        names = spec.server_names or ("",)
        names = tuple(n for n in names if all((r, n) not in used for r in ranges))
        ranges = tuple(r for r in ranges if all((r, n) not in used for n in names))
        if not names or not ranges:
            continue
        used.update((r, n) for r in ranges for n in names)
        out.append(
            replace(spec, prefix_ranges=tuple(r for r in ranges if r), server_names=tuple(n for n in names if n))
        )
    return out


def _add_inspectors(lst: listener_pb2.Listener, *, tls: bool, http: bool) -> None:
    if tls:
        lst.listener_filters.add(name=TLS_INSPECTOR).typed_config.Pack(tls_inspector_pb2.TlsInspector())
    if http:
        lst.listener_filters.add(name=HTTP_INSPECTOR).typed_config.Pack(http_inspector_pb2.HttpInspector())
    if tls or http:
        # A server-first protocol sends nothing to inspect: go on after the timeout rather than close.
        lst.continue_on_listener_filters_timeout = True


def _hcm_key(ctx: PushContext, proxy: Proxy, scope: SidecarScope, port: int, stat: str) -> tuple[object, ...]:
    """What the outbound HTTP filter chain depends on (see _outbound_http_chain)."""
    views = telemetry_key(ctx, proxy)
    mesh = ctx.state.mesh.telemetry
    traced = mesh.enable_tracing and (views[0].tracing is not None or mesh.default_tracing is not None)
    return ("hcm-out", port, stat, views, scope.key if traced else None)


def _outbound_http_chain(
    ctx: PushContext, proxy: Proxy, scope: SidecarScope, port: int, stat: str
) -> listener_components_pb2.FilterChain:
    """A fresh copy of the outbound HTTP filter chain (the HCM with RDS for
    `port`), built and packed once per state for every proxy it is the same for.

    The outbound HCM reads of the proxy only its telemetry (access logs, metrics,
    tracing: the views, as in the listener key) and, when a tracer may be
    configured, whether the collector is in its Sidecar scope (tracing.py); its
    HTTP filters (cors, fault; authz is inbound only) are the same for every proxy."""

    def build() -> listener_components_pb2.FilterChain:
        rds = naming.sidecar_route(port)
        return _filter_chain_http(http_connection_manager(ctx, proxy, "outbound", port, stat, rds=rds))

    chain = listener_components_pb2.FilterChain()
    chain.CopyFrom(ctx.cached(_hcm_key(ctx, proxy, scope, port, stat), build))  # a prototype: never changed
    return chain


_OutboundPort = tuple[EgressListener, str, int, bool, bool]  # egress, bind, port, is_http, bound


def _outbound_ports(proxy: Proxy, scope: SidecarScope) -> Iterator[_OutboundPort]:
    """The (bind, port) pairs of the Sidecar egress listeners, first egress wins."""
    seen: set[str] = set()
    for egress in scope.egress:
        bound = proxy.capture_none or egress.capture_none
        bind = egress.bind or (DEFAULT_NONE_BIND if bound else "0.0.0.0")
        for port, is_http in _egress_ports(egress, scope.services, proxy):
            name = naming.listener(bind, port)
            if name in seen:
                continue
            seen.add(name)
            yield egress, bind, port, is_http, bound


def outbound_listeners(ctx: PushContext, proxy: Proxy, scope: SidecarScope) -> list[listener_pb2.Listener]:
    """One listener per (bind, port) of the Sidecar egress listeners.

    HTTP ports: HCM with RDS. Opaque TCP and TLS ports: tcp_proxy chains from the
    VirtualService `tcp`/`tls` routes (tcproute.py, tlsroute.py). A port where HTTP
    and non-HTTP services meet sniffs: http_inspector sends plaintext HTTP to the
    HCM, everything else to the TCP/TLS chains."""
    out = []
    for op in _outbound_ports(proxy, scope):
        targets, specs = _outbound_specs(ctx, proxy, scope, op)
        out.append(_outbound_listener(ctx, proxy, scope, op, targets, specs))
    return out


def outbound_listener_builds(
    ctx: PushContext, proxy: Proxy, scope: SidecarScope, finish: Callable[[listener_pb2.Listener], Built]
) -> list[Built]:
    """outbound_listeners, each passed through `finish` (the tcp_proxy features,
    serialization), built and finished once per state for every proxy whose
    listener is the same (at 1,000 namespaces each proxy built its own copies):

    - a port where every service in scope speaks HTTP: the listener is its
      address and the outbound HTTP chain, nothing else (no tcp_proxy for the
      features to act on): keyed by bind, port and the HTTP chain's key;
    - an opaque (non-HTTP) port: its filter chains are a function of their specs
      (tcproute.filter_chain) and the tcp_proxy features read of the proxy only
      its telemetry views (access logs, metrics; outbound metric tags are CEL the
      proxy fills in): keyed by bind, port, the specs and the views.
    Sniffed ports (HTTP and opaque services together) are built per proxy."""
    out: list[Built] = []
    for op in _outbound_ports(proxy, scope):
        _, bind, port, is_http, bound = op
        targets, specs = _outbound_specs(ctx, proxy, scope, op)

        def make(op: _OutboundPort = op, targets: _Targets = targets, specs: list[L4Chain] = specs) -> Built:
            return finish(_outbound_listener(ctx, proxy, scope, op, targets, specs))

        key: tuple[object, ...] | None = None
        if is_http and not specs:
            hcm_key = _hcm_key(ctx, proxy, scope, port, f"outbound_{bind}_{port}")
            key = ("lds-http-only", bind, port, bound, proxy.capture_none, hcm_key)
        elif not is_http:
            key = ("lds-l4", bind, port, bound, proxy.capture_none, tuple(specs), telemetry_key(ctx, proxy))
        out.append(ctx.cached(key, make) if key is not None else make())
    return out


_Targets = list[tuple[Service, Protocol]]


def _outbound_specs(
    ctx: PushContext, proxy: Proxy, scope: SidecarScope, op: _OutboundPort
) -> tuple[_Targets, list[L4Chain]]:
    """The services a port's listener sends to, and its TCP/TLS filter chain specs."""
    egress, bind, port, is_http, _ = op
    targets = _listener_protocols(egress, port, scope.services)
    if is_http and egress.port is not None and egress.port.protocol.is_http:
        targets = []  # the Sidecar declared the port HTTP: every service on it is
    return targets, dedupe_chains(_l4_specs(ctx, proxy, port, bind, targets))


def _outbound_listener(
    ctx: PushContext,
    proxy: Proxy,
    scope: SidecarScope,
    op: _OutboundPort,
    targets: _Targets,
    specs: list[L4Chain],
) -> listener_pb2.Listener:
    _, bind, port, is_http, bound = op
    name = naming.listener(bind, port)
    lst = _listener(name, bind, port, "outbound")
    if not bound:
        lst.bind_to_port.value = False
    stat = f"outbound_{bind}_{port}"
    sniff = is_http and bool(specs)
    if is_http:
        chain = _outbound_http_chain(ctx, proxy, scope, port, stat)
        if sniff:
            chain.filter_chain_match.transport_protocol = "raw_buffer"
            chain.filter_chain_match.application_protocols.extend(PLAINTEXT_HTTP_ALPNS)
        lst.filter_chains.append(chain)
    sniffed_ranges = _sniffed_ranges(proxy, port, targets) if sniff else set()
    for spec in specs:
        fc = filter_chain(spec)
        if sniff and not spec.server_names:
            # Envoy does not fall back from the raw_buffer branch the HTTP chain opens.
            fc.filter_chain_match.transport_protocol = "raw_buffer"
            if spec.prefix_ranges and set(spec.prefix_ranges) <= sniffed_ranges:
                # Destination addresses are matched before protocols: a sniffed
                # service's own address needs its own HTTP chain too.
                http_fc = _outbound_http_chain(ctx, proxy, scope, port, stat)
                http_fc.filter_chain_match.CopyFrom(fc.filter_chain_match)
                http_fc.filter_chain_match.application_protocols.extend(PLAINTEXT_HTTP_ALPNS)
                lst.filter_chains.append(http_fc)
        lst.filter_chains.append(fc)
    for fc in lst.filter_chains:
        # As istiod (listener.go): a TLS handshake must finish within 15 s.
        fc.transport_socket_connect_timeout.seconds = 15
    if proxy.capture_none:
        # istiod sets this on listeners that bind their own socket: each
        # wake-up accepts one connection, spreading them over the workers.
        lst.max_connections_to_accept_per_socket_event.value = 1
    if not lst.filter_chains:
        lst.filter_chains.append(_filter_chain_tcp(stat, naming.BLACKHOLE))
    _add_inspectors(lst, tls=any(s.server_names for s in specs), http=sniff)
    return lst


def inbound_ports(ctx: PushContext, proxy: Proxy, scope: SidecarScope) -> list[IngressListener]:
    """The Sidecar's ingress entries; without them, one per service port this
    proxy's address serves (the app at 127.0.0.1:targetPort, as Istio assumes)."""
    if scope.ingress:
        return list(scope.ingress)
    found: dict[int, IngressListener] = {}
    for ep in ctx.state.endpoints_by_address.get(proxy.ip, ()):
        svc = ctx.state.services.get(ep.service)
        if svc is None:
            continue
        sport = svc.port(ep.service_port)
        if sport is None or ep.port in found:
            continue
        port = Port(sport.name, ep.port, sport.protocol, ep.port)
        found[ep.port] = IngressListener(port, "", f"127.0.0.1:{ep.port}")
    return [found[k] for k in sorted(found)]


def parse_endpoint(default_endpoint: str, port: int) -> tuple[str, int]:
    target = default_endpoint or f"127.0.0.1:{port}"
    host, _, p = target.rpartition(":")
    if not host:
        return target, port
    return host, int(p)


def _inbound_operation(ctx: PushContext, proxy: Proxy, port: int) -> str:
    """istiod's inbound route decorator: `<service FQDN>:<service port>/*` of the
    first service (by name) this proxy serves on `port`."""
    found = sorted(
        (ep.service, ep.service_port)
        for ep in ctx.state.endpoints_by_address.get(proxy.ip, ())
        if ep.port == port and ep.service in ctx.state.services
    )
    host, service_port = found[0] if found else ("", 0)
    return f"{host}:{service_port}/*"


def inbound_listener(ctx: PushContext, proxy: Proxy, ing: IngressListener) -> listener_pb2.Listener:
    port = ing.port.number
    bind = ing.bind or proxy.ip
    lst = _listener(naming.listener(bind, port), bind, port, "inbound")
    cluster = naming.inbound_cluster(port)
    stat = f"inbound_{bind}_{port}"
    pre = extra_network_filters(ctx, proxy, "inbound", port)
    http = ing.port.protocol.is_http
    if http:
        routes = inbound_route_config(
            port, cluster, grpc=ing.port.protocol == Protocol.GRPC, operation=_inbound_operation(ctx, proxy, port)
        )
        manager = http_connection_manager(ctx, proxy, "inbound", port, stat, route_config=routes)
        if ing.port.protocol.is_http2:
            manager.http2_protocol_options.SetInParent()  # as istiod's inbound HTTP2/gRPC ports
        mtls.forward_client_cert(manager)
        chain = _filter_chain_http(manager, pre)
    else:
        chain = _filter_chain_tcp(stat, cluster, pre)
    # PeerAuthentication decides the chains: mTLS, plaintext, or both (security/mtls.py).
    lst.max_connections_to_accept_per_socket_event.value = 1  # as istiod's inbound listeners
    mode = mtls.inbound_mode(ctx, proxy, port)
    mtls.apply_inbound(lst, chain, mode, http=http, trust_domains=mtls.validation_trust_domains(ctx))
    return lst
