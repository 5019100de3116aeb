"""RDS: sidecar outbound route configurations, one per port, named by port."""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2

from istiod_py.model import Proxy, Service

from .. import naming
from ..context import PushContext, SidecarScope
from ..features import RouteInput
from ..route import delegate
from ..route.httproute import build_routes, default_route
from . import protocols


def service_domains(svc: Service, port: int, proxy_ns: str) -> list[str]:
    """Host names a client may use for a service: the FQDN, the short forms for
    Kubernetes-style names (the bare name only within the same namespace), and
    the service addresses; each with and without the port."""
    names = [svc.hostname]
    parts = svc.hostname.split(".")
    if len(parts) >= 3 and parts[2] == "svc":
        name, ns = parts[0], parts[1]
        names += [f"{name}.{ns}.svc", f"{name}.{ns}"]
        if ns == proxy_ns:
            names.append(name)
    names += [a for a in svc.addresses if "/" not in a]
    out = []
    for n in names:
        out += [n, f"{n}:{port}"]
    return out


def _vhost_routes(ctx: PushContext, proxy: Proxy, svc: Service, port: int, gateway: str) -> list[rc.Route]:
    vs = ctx.vs_for_host(svc.hostname, proxy.namespace, gateway)
    if vs is not None:
        routes: list[rc.Route] = []
        for http in delegate.http_routes(ctx, vs):
            routes += build_routes(RouteInput(ctx, vs, http, port, proxy.namespace, gateway), proxy)
        return routes
    inp = RouteInput(ctx, None, None, port, proxy.namespace, gateway)
    return [default_route(inp, naming.outbound_cluster(port, svc.hostname))]


def _unique_domains(domains: Iterable[str], used: set[str]) -> list[str]:
    out = []
    for d in domains:
        if d not in used:
            used.add(d)
            out.append(d)
    return out


def sidecar_route_config(
    ctx: PushContext, proxy: Proxy, scope: SidecarScope, port: int
) -> route_pb2.RouteConfiguration:
    rcfg = route_pb2.RouteConfiguration(name=naming.sidecar_route(port), validate_clusters={"value": False})
    used: set[str] = set()
    for svc in scope.services:
        sport = svc.port(port)
        if sport is None or not (sport.protocol.is_http or protocols.sniffed(proxy, svc, sport)):
            continue
        domains = _unique_domains(service_domains(svc, port, proxy.namespace), used)
        if not domains:
            continue
        vh = rcfg.virtual_hosts.add(name=naming.vhost(svc.hostname, port))
        vh.domains.extend(domains)
        # Traced: the virtual host's own provenance (its VirtualService), kept beside the resource.
        routes, reads = ctx.traced(lambda: _vhost_routes(ctx, proxy, svc, port, "mesh"))  # noqa: B023
        vh.routes.extend(routes)
        ctx.sub_origins[f"{rcfg.name}/{vh.name}"] = reads
        vh.include_request_attempt_count = True
    catch_all = rcfg.virtual_hosts.add()
    catch_all.domains.append("*")
    if scope.outbound_policy == "REGISTRY_ONLY":
        catch_all.name = "block_all"
        catch_all.routes.add(name="block_all", match=rc.RouteMatch(prefix="/"), direct_response={"status": 502})
    else:
        catch_all.name = "allow_any"
        r = catch_all.routes.add(name="allow_any", match=rc.RouteMatch(prefix="/"))
        r.route.cluster = naming.PASSTHROUGH
        r.route.timeout.seconds = 0
    return rcfg


def inbound_route_config(port: int, cluster: str) -> route_pb2.RouteConfiguration:
    rcfg = route_pb2.RouteConfiguration(name=naming.inbound_cluster(port), validate_clusters={"value": False})
    vh = rcfg.virtual_hosts.add(name=f"inbound|http|{port}", domains=["*"])
    r = vh.routes.add(name="default", match=rc.RouteMatch(prefix="/"))
    r.route.cluster = cluster
    r.route.timeout.seconds = 0
    r.route.max_stream_duration.grpc_timeout_header_max.seconds = 0
    r.decorator.operation = f"{cluster}/*"
    return rcfg
