"""VirtualService hosts and destinations, as Istio's virtualservice analyzers:

- IST0109: VirtualServices bound to the mesh gateway that define the same host
  (scoped by where they are exported) -- istiod would pick one, arbitrarily.
- IST0112: a destination without a port to a service with more than one port.
- IST0132: hosts of a VirtualService that no server of its Gateway accepts.
- IST0101 "host:port": a destination port the destination service does not expose."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from istiod_py.config.analyzers.context import Context, fqdn, full_name, host_matches
from istiod_py.config.analyzers.messages import Message, go_list, new


def _mesh_bound(spec: Any) -> bool:
    return not spec.gateways or "mesh" in spec.gateways


def conflicting_mesh_hosts(ctx: Context) -> Iterator[Message]:
    by_host: dict[str, list[Any]] = {}
    for vs in ctx.of("VirtualService"):
        spec: Any = vs.spec
        if not spec.hosts or not _mesh_bound(spec):
            continue  # delegates (no hosts) and gateway-only VirtualServices cannot conflict here
        ns = vs.meta.namespace
        export = list(spec.export_to)
        scopes = ["*"] if not export or "*" in export else [ns if e == "." else e for e in export]
        for h in spec.hosts:
            for scope in scopes:
                by_host.setdefault(f"{scope}/{fqdn(h, ns, ctx.domain)}", []).append(vs)
    reported: set[str] = set()
    for scoped, vss in sorted(by_host.items()):
        if len(vss) < 2:
            continue
        names = ",".join(full_name(v) for v in vss)
        for vs in vss:
            if full_name(vs) not in reported:
                reported.add(full_name(vs))
                yield new("IST0109", vs, names, scoped, field="spec.hosts")


def _destinations(spec: Any) -> Iterator[tuple[str, Any]]:
    for i, r in enumerate(spec.http):
        for j, d in enumerate(r.route):
            yield f"spec.http[{i}].route[{j}].destination", d.destination
        if r.HasField("mirror"):
            yield f"spec.http[{i}].mirror", r.mirror
    for kind in ("tcp", "tls"):
        for i, r in enumerate(getattr(spec, kind)):
            for j, d in enumerate(r.route):
                yield f"spec.{kind}[{i}].route[{j}].destination", d.destination


def port_selector_required(ctx: Context) -> Iterator[Message]:
    for vs in ctx.of("VirtualService"):
        for path, dest in _destinations(vs.spec):
            if not dest.host:
                continue
            svc = ctx.service(fqdn(dest.host, vs.meta.namespace, ctx.domain))
            if svc is None:
                continue  # IST0101 "host", reported by references.py
            if not dest.HasField("port"):
                if len(svc.ports) > 1:
                    yield new("IST0112", vs, dest.host, go_list(p.number for p in svc.ports), field=path)
            elif dest.port.number and svc.port(dest.port.number) is None:
                yield new("IST0101", vs, "host:port", f"{dest.host}:{dest.port.number}", field=f"{path}.port")


def _gateway_accepts(gw_host: str, gw_ns: str, vs_host: str, vs_ns: str) -> bool:
    ns, sep, host = gw_host.rpartition("/")
    if sep and ns not in ("*", vs_ns) and not (ns == "." and gw_ns == vs_ns):
        return False
    return host_matches(host, vs_host) or host_matches(vs_host, host)


def hosts_not_in_gateway(ctx: Context) -> Iterator[Message]:
    gateways = {full_name(g): g for g in ctx.of("Gateway")}
    for vs in ctx.of("VirtualService"):
        spec: Any = vs.spec
        ns = vs.meta.namespace
        for i, ref in enumerate(spec.gateways):
            if ref == "mesh":
                continue
            gw = gateways.get(ref if "/" in ref else f"{ns}/{ref}")
            if gw is None:
                continue  # IST0101, reported by references.py
            gw_hosts = [h for s in gw.spec.servers for h in s.hosts]  # type: ignore[attr-defined]
            missing = [
                h for h in spec.hosts if not any(_gateway_accepts(g, gw.meta.namespace, h, ns) for g in gw_hosts)
            ]
            if missing:
                yield new("IST0132", vs, go_list(missing), full_name(vs), full_name(gw), field=f"spec.gateways[{i}]")


def analyze(ctx: Context) -> Iterator[Message]:
    yield from conflicting_mesh_hosts(ctx)
    yield from port_selector_required(ctx)
    yield from hosts_not_in_gateway(ctx)
