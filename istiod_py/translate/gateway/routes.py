"""RDS for gateways: VirtualServices bound to a Gateway become virtual hosts of
`http.PORT` (plaintext servers, merged per port) or
`https.PORT.PORTNAME.GATEWAY.NS` (one per TLS-terminating server), as istiod
names them. A host with no VirtualService gets no virtual host (404)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2

from istiod_py.config.model import Config
from istiod_py.model import Proxy

from ..context import PushContext, fqdn
from ..features import RouteInput
from ..route import delegate
from ..route.httproute import build_routes
from ..scope import host_matches
from .servers import GatewayServer


def http_route_name(srv: GatewayServer) -> str:
    suffix = f".{srv.server.bind}" if srv.server.bind else ""
    return f"http.{srv.listener_port}{suffix}"


def https_route_name(srv: GatewayServer) -> str:
    suffix = f".{srv.server.bind}" if srv.server.bind else ""
    gw = srv.gateway.meta
    return f"https.{srv.number}.{srv.port_name}.{gw.name}.{gw.namespace}{suffix}"


def intersect_host(server_host: str, vs_host: str) -> str:
    """The more specific of two overlapping hosts; "" when they do not overlap."""
    if host_matches(server_host, vs_host):
        return vs_host
    if host_matches(vs_host, server_host):
        return server_host
    return ""


def bound_hosts(ctx: PushContext, srv: GatewayServer, vs: Config, vs_hosts: Iterable[str]) -> list[str]:
    """The VirtualService's hosts that this server exposes, honouring `ns/host`
    restrictions on the server's hosts."""
    out: list[str] = []
    for h in vs_hosts:
        full = fqdn(h, vs.meta.namespace, ctx.domain)
        for sh in srv.hosts:
            if sh.namespace not in ("*", vs.meta.namespace):
                continue
            m = intersect_host(sh.host, full)
            if m and m not in out:
                out.append(m)
    return out


def vhost_domains(host: str) -> list[str]:
    # As istiod: the host, and the host with any port (Host headers may carry one).
    return [host] if host == "*" else [host, f"{host}:*"]


def _add_server_vhosts(
    ctx: PushContext,
    proxy: Proxy,
    srv: GatewayServer,
    rcfg: route_pb2.RouteConfiguration,
    by_name: dict[str, rc.VirtualHost],
    used_domains: set[str],
    done: set[tuple[str, str]],
) -> None:
    gw = srv.gateway_name
    for vs in ctx.virtual_services(proxy.namespace, gw):
        spec: Any = vs.spec
        if not spec.http:
            continue
        hosts = bound_hosts(ctx, srv, vs, spec.hosts)
        if not hosts:
            continue
        routes: list[rc.Route] = []
        for http in delegate.http_routes(ctx, vs):
            routes += build_routes(RouteInput(ctx, vs, http, srv.number, proxy.namespace, gw), proxy)
        vs_key = f"{vs.meta.namespace}/{vs.meta.name}"
        for host in hosts:
            name = f"{host}:{srv.number}"
            if (name, vs_key) in done:
                continue
            done.add((name, vs_key))
            vh = by_name.get(name)
            if vh is None:
                domains = [d for d in vhost_domains(host) if d not in used_domains]
                if not domains:
                    continue  # another vhost already answers this host (Envoy rejects duplicates)
                used_domains.update(domains)
                vh = rcfg.virtual_hosts.add(name=name, domains=domains)
                vh.include_request_attempt_count = True
                if srv.https_redirect:
                    vh.require_tls = rc.VirtualHost.ALL
                by_name[name] = vh
            # Several VirtualServices for one host at a gateway: istiod appends their routes.
            vh.routes.extend(routes)


def route_config(
    ctx: PushContext, proxy: Proxy, name: str, port: int, group: Iterable[GatewayServer]
) -> route_pb2.RouteConfiguration:
    rcfg = route_pb2.RouteConfiguration(name=name, validate_clusters={"value": False})
    by_name: dict[str, rc.VirtualHost] = {}
    used: set[str] = set()
    done: set[tuple[str, str]] = set()
    for srv in group:
        _add_server_vhosts(ctx, proxy, srv, rcfg, by_name, used, done)
    if not rcfg.virtual_hosts:
        # istiod's placeholder: a route config with no virtual host would 404 anyway,
        # but this names the reason in config dumps.
        vh = rcfg.virtual_hosts.add(name=f"blackhole:{port}", domains=["*"])
        vh.routes.add(name="blackhole", match=rc.RouteMatch(prefix="/"), direct_response={"status": 404})
    return rcfg


def build_route_configs(
    ctx: PushContext, proxy: Proxy, servers: Iterable[GatewayServer]
) -> list[route_pb2.RouteConfiguration]:
    plain: dict[str, list[GatewayServer]] = {}
    out: list[route_pb2.RouteConfiguration] = []
    seen: set[str] = set()
    for srv in servers:
        if srv.unsupported:
            continue
        if srv.is_http:
            plain.setdefault(http_route_name(srv), []).append(srv)
        elif srv.is_https_terminated:
            name = https_route_name(srv)
            if name not in seen:
                seen.add(name)
                out.append(route_config(ctx, proxy, name, srv.number, [srv]))
    for name, group in plain.items():
        out.append(route_config(ctx, proxy, name, group[0].listener_port, group))
    return sorted(out, key=lambda r: r.name)
