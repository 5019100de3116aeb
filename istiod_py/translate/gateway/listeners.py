"""LDS for gateways: one listener per (bind address, port), its filter chains
from the Gateway servers on that port.

- plaintext HTTP servers: one chain, HCM with RDS `http.PORT`;
- HTTPS SIMPLE/MUTUAL: a chain per server, matched by SNI (the server's hosts),
  terminating TLS with the server's certificate, HCM with RDS
  `https.PORT.PORTNAME.GATEWAY.NS`;
- PASSTHROUGH: a chain per VirtualService `tls` match (its `sniHosts` within
  the server's hosts) to tcp_proxy toward the route's destination;
- AUTO_PASSTHROUGH: the SNI is a cluster name (`outbound_.PORT_.SUBSET_.HOST`):
  sni_cluster picks the cluster, tcp_proxy forwards;
- TCP: tcp_proxy to the VirtualService `tcp` route's destination.

Servers that cannot be served (credentialName, mixed plaintext and TLS on one
port, duplicate SNI) are left out rather than sent: Envoy would reject the
whole listener.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.listener.v3.listener_components_pb2 import FilterChain
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.sni_cluster.v3 import sni_cluster_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from istiod_py.cache.resources import Built, Part, build
from istiod_py.model import Proxy
from istiod_py.xds.types import TypeUrl

from .. import naming
from ..clusters import socket_address
from ..context import PushContext
from ..hcm import HCM_NAME, TCP_PROXY_NAME, http_connection_manager
from ..route.httproute import destination_cluster
from ..security import mtls
from . import credentials
from .routes import bound_hosts, http_route_name, https_route_name, intersect_host
from .servers import GatewayServer, bind_address

TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
SNI_CLUSTER = "envoy.filters.network.sni_cluster"


def sni_dnat_name(cluster: str) -> str:
    """`outbound|9080|v1|reviews...` -> `outbound_.9080_.v1_.reviews...` (istiod's SNI-DNAT name)."""
    parsed = naming.parse_cluster(cluster)
    if parsed is None:
        return cluster
    direction, port, subset, host = parsed
    return f"{direction}_.{port}_.{subset}_.{host}"


def _l4_applies(m: Any, srv: GatewayServer, vs_ns: str) -> bool:
    if m.port and m.port != srv.number:
        return False
    if m.gateways:
        names = {g if g == "mesh" or "/" in g else f"{vs_ns}/{g}" for g in m.gateways}
        if srv.gateway_name not in names:
            return False
    return True


def _tcp_proxy_chain(ctx: PushContext, dests: Sequence[Any], vs_ns: str, port: int) -> FilterChain:
    fc = FilterChain()
    tp = tcp_proxy_pb2.TcpProxy()
    if len(dests) == 1:
        tp.cluster = destination_cluster(ctx, dests[0].destination, vs_ns, port)
        tp.stat_prefix = tp.cluster
    else:
        for d in dests:
            tp.weighted_clusters.clusters.add(
                name=destination_cluster(ctx, d.destination, vs_ns, port), weight=max(d.weight, 1)
            )
        tp.stat_prefix = tp.weighted_clusters.clusters[0].name
    fc.filters.add(name=TCP_PROXY_NAME).typed_config.Pack(tp)
    return fc


def _hcm_chain(ctx: PushContext, proxy: Proxy, srv: GatewayServer, bind: str, rds: str) -> FilterChain:
    manager = http_connection_manager(
        ctx, proxy, "gateway", srv.listener_port, f"outbound_{bind}_{srv.listener_port}", rds=rds
    )
    fc = FilterChain()
    fc.filters.add(name=HCM_NAME).typed_config.Pack(manager)
    return fc


def _passthrough_chains(ctx: PushContext, proxy: Proxy, srv: GatewayServer) -> list[FilterChain]:
    out = []
    for vs in ctx.virtual_services(proxy.namespace, srv.gateway_name):
        spec: Any = vs.spec
        ns = vs.meta.namespace
        vs_hosts = bound_hosts(ctx, srv, vs, spec.hosts)
        if not vs_hosts:
            continue
        for tls in spec.tls:
            if not tls.route:
                continue
            for m in tls.match:
                if not _l4_applies(m, srv, ns):
                    continue
                snis = []
                for sni in m.sni_hosts:
                    for h in vs_hosts:
                        hit = intersect_host(h, sni)
                        if hit and hit != "*" and hit not in snis:
                            snis.append(hit)
                if not snis:
                    continue
                fc = _tcp_proxy_chain(ctx, list(tls.route), ns, srv.number)
                fc.filter_chain_match.server_names.extend(snis)
                out.append(fc)
    return out


def _auto_passthrough_chain(srv: GatewayServer) -> FilterChain:
    fc = FilterChain()
    fc.filter_chain_match.server_names.extend(srv.sni_names)
    fc.filters.add(name=SNI_CLUSTER).typed_config.Pack(sni_cluster_pb2.SniCluster())
    tp = tcp_proxy_pb2.TcpProxy(stat_prefix=naming.BLACKHOLE, cluster=naming.BLACKHOLE)
    fc.filters.add(name=TCP_PROXY_NAME).typed_config.Pack(tp)
    return fc


def _tcp_chain(ctx: PushContext, proxy: Proxy, srv: GatewayServer) -> FilterChain | None:
    for vs in ctx.virtual_services(proxy.namespace, srv.gateway_name):
        spec: Any = vs.spec
        if not bound_hosts(ctx, srv, vs, spec.hosts):
            continue
        for tcp in spec.tcp:
            if not tcp.route:
                continue
            if tcp.match and not any(_l4_applies(m, srv, vs.meta.namespace) for m in tcp.match):
                continue
            return _tcp_proxy_chain(ctx, list(tcp.route), vs.meta.namespace, srv.number)
    return None


def _is_tls_class(srv: GatewayServer) -> bool:
    return srv.is_https_terminated or srv.is_passthrough or srv.is_auto_passthrough


def _tls_chains(ctx: PushContext, proxy: Proxy, srv: GatewayServer, bind: str) -> list[FilterChain]:
    if srv.is_https_terminated:
        fc = _hcm_chain(ctx, proxy, srv, bind, https_route_name(srv))
        fc.filter_chain_match.server_names.extend(srv.sni_names)
        ts = fc.transport_socket
        ts.name = credentials.TLS_TRANSPORT_SOCKET
        # SDS secrets (file-cert:/file-root:) when the proxy runs under the agent, else file paths.
        ts.typed_config.Pack(credentials.downstream_tls_context(srv.server.tls, sds=mtls.sds_capable(proxy)))
        return [fc]
    if srv.is_passthrough:
        return _passthrough_chains(ctx, proxy, srv)
    if srv.is_auto_passthrough:
        return [_auto_passthrough_chain(srv)]
    return []


def _listener(
    ctx: PushContext, proxy: Proxy, bind: str, port: int, group: Sequence[GatewayServer]
) -> listener_pb2.Listener | None:
    lst = listener_pb2.Listener(name=naming.listener(bind, port), address=socket_address(bind, port))
    lst.traffic_direction = 2  # OUTBOUND, as istiod marks gateway listeners
    usable = [s for s in group if not s.unsupported]
    if any(_is_tls_class(s) for s in usable):
        # A port is TLS or plaintext, not both (istiod reports the conflict too).
        # Envoy rejects two chains matching the same server name: the first server owns it.
        used: set[str] = set()
        catch_all = False
        for srv in usable:
            if not _is_tls_class(srv):
                continue
            for fc in _tls_chains(ctx, proxy, srv, bind):
                names = list(fc.filter_chain_match.server_names)
                if not names:
                    if catch_all:
                        continue
                    catch_all = True
                else:
                    fresh = [n for n in names if n not in used]
                    if not fresh:
                        continue
                    used.update(fresh)
                    del fc.filter_chain_match.server_names[:]
                    fc.filter_chain_match.server_names.extend(fresh)
                lst.filter_chains.append(fc)
        if lst.filter_chains:
            lf = lst.listener_filters.add(name=TLS_INSPECTOR)
            lf.typed_config.Pack(tls_inspector_pb2.TlsInspector())
    else:
        http = [s for s in usable if s.is_http]
        if http:
            lst.filter_chains.append(_hcm_chain(ctx, proxy, http[0], bind, http_route_name(http[0])))
        else:
            for srv in usable:
                if srv.protocol in ("TCP", "MONGO", "REDIS", "MYSQL"):
                    fc = _tcp_chain(ctx, proxy, srv)
                    if fc is not None:
                        lst.filter_chains.append(fc)
                        break
    # As istiod's gateway listeners: a TLS handshake must finish within 15 s
    # (PILOT_GATEWAY_TRANSPORT_SOCKET_CONNECT_TIMEOUT), and each wake-up of the
    # listen socket accepts one connection, spreading them over the workers.
    for fc in lst.filter_chains:
        fc.transport_socket_connect_timeout.seconds = 15
    lst.max_connections_to_accept_per_socket_event.value = 1
    return lst if lst.filter_chains else None


def build_listeners(ctx: PushContext, proxy: Proxy, servers: Iterable[GatewayServer]) -> list[listener_pb2.Listener]:
    groups: dict[tuple[str, int], list[GatewayServer]] = {}
    for srv in servers:
        groups.setdefault((bind_address(proxy, srv), srv.listener_port), []).append(srv)
    out = []
    for (bind, port), group in sorted(groups.items()):
        lst = _listener(ctx, proxy, bind, port, group)
        if lst is not None:
            out.append(lst)
    return out


def sni_dnat_clusters(
    ctx: PushContext, proxy: Proxy, servers: Iterable[GatewayServer], outbound: Part
) -> dict[str, Built]:
    """AUTO_PASSTHROUGH needs each outbound cluster under its SNI name too; the
    copies keep the EDS service name, so endpoints are shared."""
    if not any(s.is_auto_passthrough and not s.unsupported for s in servers):
        return {}
    out: dict[str, Built] = {}
    for name, built in outbound.items.items():
        if not name.startswith("outbound|"):
            continue
        c = cluster_pb2.Cluster()
        c.CopyFrom(built.message())
        c.name = sni_dnat_name(name)
        if c.type == cluster_pb2.Cluster.EDS and not c.eds_cluster_config.service_name:
            c.eds_cluster_config.service_name = name
        # The client's TLS passes through untouched: the copy originates none (as istiod's sni-dnat clusters).
        c.ClearField("transport_socket")
        c.ClearField("transport_socket_matches")
        if c.HasField("load_assignment"):
            c.load_assignment.cluster_name = c.name
        out[c.name] = build(c.name, TypeUrl.CLUSTER, c)
    return out
