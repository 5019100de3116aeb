"""RDS: sidecar outbound route configurations, one per port, named by port."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2

from istiod_py.config.model import Config
from istiod_py.model import Proxy, Service

from .. import naming
from ..context import PushContext, SidecarScope, fqdn
from ..features import RouteInput
from ..route import delegate
from ..route.httproute import build_routes, default_route
from ..scope import host_matches
from . import protocols


def _is_ip(host: str) -> bool:
    # Most hosts are names: no ':' (IPv6) and not only digits and dots (IPv4)
    # settle it without ipaddress' parse-and-raise.
    if ":" not in host and not host.replace(".", "").isdigit():
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def service_domains(svc: Service, port: int, proxy_ns: str) -> list[str]:
    """Host names a client may use for a service, in istiod's order
    (generateVirtualHostDomains): the FQDN, the FQDN with a trailing dot, the
    short forms of a Kubernetes-style name (the bare name only within the same
    namespace), then the service addresses (IPv6 in brackets). No `:port`
    variants: the route configuration ignores the port in Host matching."""
    del port  # kept for callers; istiod adds port variants only to listenerPort 0 (HTTP proxy) routes
    names = [svc.hostname]
    if not _is_ip(svc.hostname):
        names.append(svc.hostname + ".")
    parts = svc.hostname.split(".")
    if len(parts) >= 3 and parts[2] == "svc":
        name, ns = parts[0], parts[1]
        if ns == proxy_ns:
            names += [name, f"{name}.{ns}.svc", f"{name}.{ns}"]
        else:
            names += [f"{name}.{ns}", f"{name}.{ns}.svc"]
    for a in svc.addresses:
        if "/" in a or a == "0.0.0.0":
            continue
        names.append(f"[{a}]" if ":" in a else a)
    return names


def _vhost_routes(ctx: PushContext, proxy: Proxy, svc: Service, port: int, gateway: str) -> list[rc.Route]:
    vs = ctx.vs_for_host(svc.hostname, proxy.namespace, gateway)
    if vs is not None:
        routes: list[rc.Route] = []
        for http in delegate.http_routes(ctx, vs):
            routes += build_routes(RouteInput(ctx, vs, http, port, proxy.namespace, gateway), proxy)
        return routes
    inp = RouteInput(ctx, None, None, port, proxy.namespace, gateway)
    return [default_route(inp, naming.outbound_cluster(port, svc.hostname))]


def _hosts_without_service(ctx: PushContext, scope: SidecarScope, proxy_ns: str) -> list[tuple[Config, str]]:
    """(VirtualService, host) for the hosts of visible mesh VirtualServices that
    no service in scope covers: istiod gives each a virtual host of its own
    (`host:port`, domains [host]) on every HTTP route configuration."""
    out: list[tuple[Config, str]] = []
    for vs in ctx.virtual_services(proxy_ns, "mesh"):
        spec: Any = vs.spec
        for h in spec.hosts:
            host = fqdn(h, vs.meta.namespace, ctx.domain)
            if host == "*":
                continue  # the catch-all virtual host owns "*"
            if any(host_matches(host, svc.hostname) for svc in scope.services):
                continue
            if any(e.hosts.allows(vs.meta.namespace, host) for e in scope.egress):
                out.append((vs, host))
    return out


def _unique_domains(domains: Iterable[str], used: set[str]) -> list[str]:
    out = []
    for d in domains:
        if d not in used:
            used.add(d)
            out.append(d)
    return out


def _shell(port: int) -> route_pb2.RouteConfiguration:
    """The route configuration of a port without its virtual hosts. As istiod's
    sidecar outbound routes: `Host: reviews:9080` and `Host: reviews` pick the same
    virtual host; direct responses may carry up to 1 MiB."""
    rcfg = route_pb2.RouteConfiguration(name=naming.sidecar_route(port), validate_clusters={"value": False})
    rcfg.ignore_port_in_host_matching = True
    rcfg.max_direct_response_body_size_bytes.value = 1048576
    return rcfg


def _vhost(ctx: PushContext, proxy: Proxy, svc: Service, port: int, domains: list[str]) -> rc.VirtualHost:
    vh = rc.VirtualHost(name=naming.vhost(svc.hostname, port))
    vh.domains.extend(domains)
    # Traced: the virtual host's own provenance (its VirtualService), kept beside the resource.
    vh_routes, reads = ctx.traced(lambda: _vhost_routes(ctx, proxy, svc, port, "mesh"))
    vh.routes.extend(vh_routes)
    ctx.sub_origins[vhost_origin_key(port, vh.name)] = reads
    vh.include_request_attempt_count = True
    return vh


def vhost_origin_key(port: int, vhost: str) -> str:
    """Where a virtual host's provenance is kept: `<route config>/<virtual host>`."""
    return f"{naming.sidecar_route(port)}/{vhost}"


def _http_vhosts(
    scope: SidecarScope, port: int, proxy: Proxy, used: set[str]
) -> Iterable[tuple[Service, list[str], bool]]:
    """The services with a virtual host on `port` (HTTP, or sniffed on a captured
    proxy), their domains, and whether every domain of theirs is there (none taken
    by an earlier service). Records the domains taken in `used`."""
    for svc in scope.services:
        sport = svc.port(port)
        if sport is None or not (sport.protocol.is_http or protocols.sniffed(proxy, svc, sport)):
            continue
        all_domains = service_domains(svc, port, proxy.namespace)
        domains = _unique_domains(all_domains, used)
        if domains:
            yield svc, domains, len(domains) == len(all_domains)


def _vs_only_vhosts(
    ctx: PushContext, proxy: Proxy, scope: SidecarScope, port: int, used: set[str]
) -> Iterable[rc.VirtualHost]:
    """Virtual hosts of VirtualService hosts that no service in scope covers."""
    for vs, host in _hosts_without_service(ctx, scope, proxy.namespace):
        domains = _unique_domains([host], used)
        routes: list[rc.Route] = []
        for http in delegate.http_routes(ctx, vs):
            routes += build_routes(RouteInput(ctx, vs, http, port, proxy.namespace, "mesh"), proxy)
        if not domains or not routes:
            continue
        vh = rc.VirtualHost(name=naming.vhost(host, port), domains=domains)
        vh.routes.extend(routes)
        vh.include_request_attempt_count = True
        yield vh


def _catch_all(scope: SidecarScope) -> rc.VirtualHost:
    catch_all = rc.VirtualHost()
    catch_all.domains.append("*")
    if scope.outbound_policy == "REGISTRY_ONLY":
        catch_all.name = "block_all"
        catch_all.routes.add(name="block_all", match=rc.RouteMatch(prefix="/"), direct_response={"status": 502})
    else:
        catch_all.name = "allow_any"
        r = catch_all.routes.add(name="allow_any", match=rc.RouteMatch(prefix="/"))
        r.route.cluster = naming.PASSTHROUGH
        r.route.timeout.seconds = 0
        r.route.max_grpc_timeout.seconds = 0
    catch_all.include_request_attempt_count = True
    return catch_all


def sidecar_route_config(
    ctx: PushContext, proxy: Proxy, scope: SidecarScope, port: int
) -> route_pb2.RouteConfiguration:
    rcfg = _shell(port)
    used: set[str] = set()
    for svc, domains, _ in _http_vhosts(scope, port, proxy, used):
        rcfg.virtual_hosts.append(_vhost(ctx, proxy, svc, port, domains))
    rcfg.virtual_hosts.extend(_vs_only_vhosts(ctx, proxy, scope, port, used))
    rcfg.virtual_hosts.append(_catch_all(scope))
    return rcfg


INBOUND_RETRY_ON = "reset-before-request"
INBOUND_RETRIES = 2


def inbound_route_config(
    port: int, cluster: str, *, grpc: bool = False, operation: str = ""
) -> route_pb2.RouteConfiguration:
    """istiod's BuildDefaultHTTPInboundRoute: one catch-all route to the app. It
    retries twice a request the app reset before reading any of it (a connection
    to the app that died while idle in the pool), except on gRPC ports."""
    rcfg = route_pb2.RouteConfiguration(name=naming.inbound_cluster(port), validate_clusters={"value": False})
    vh = rcfg.virtual_hosts.add(name=f"inbound|http|{port}", domains=["*"])
    r = vh.routes.add(name="default", match=rc.RouteMatch(prefix="/"))
    r.route.cluster = cluster
    r.route.timeout.seconds = 0
    r.route.max_stream_duration.max_stream_duration.seconds = 0
    r.route.max_stream_duration.grpc_timeout_header_max.seconds = 0
    r.decorator.operation = operation or ":0/*"  # istiod's operation for no known service
    if not grpc:
        r.route.retry_policy.retry_on = INBOUND_RETRY_ON
        r.route.retry_policy.num_retries.value = INBOUND_RETRIES
    return rcfg
