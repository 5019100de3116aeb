"""Gateway checks, as Istio's gateway analyzers:

- IST0145 ConflictingGateways: two Gateways with the same selector, the same
  server port and overlapping hosts.
- IST0104 GatewayPortNotOnWorkload (Istio's retired form of IST0162): a server
  port that no Service selecting the gateway's workloads exposes. Checked only when
  the files describe workloads the selector matches (a gateway deployment is
  rarely part of the config files; without it there is nothing to check against)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from istiod_py.config.analyzers.context import Context, full_name, hosts_overlap, selector_string, selects
from istiod_py.config.analyzers.messages import Message, new


def conflicting(ctx: Context) -> Iterator[Message]:
    servers: dict[tuple[str, int], dict[str, list[str]]] = {}
    for gw in ctx.of("Gateway"):
        spec: Any = gw.spec
        sel = selector_string(spec.selector)
        for s in spec.servers:
            servers.setdefault((sel, s.port.number), {}).setdefault(full_name(gw), []).extend(s.hosts)
    for gw in ctx.of("Gateway"):
        spec = gw.spec
        sel = selector_string(spec.selector)
        for i, s in enumerate(spec.servers):
            others = sorted(
                name
                for name, hosts in servers.get((sel, s.port.number), {}).items()
                if name != full_name(gw) and any(hosts_overlap(a, b) for a in s.hosts for b in hosts)
            )
            if others:
                yield new("IST0145", gw, ",".join(others), sel, str(s.port.number), ",".join(s.hosts),
                          field=f"spec.servers[{i}]")  # fmt: skip


def ports_on_workload(ctx: Context) -> Iterator[Message]:
    for gw in ctx.of("Gateway"):
        spec: Any = gw.spec
        selector = dict(spec.selector)
        pods = [w for w in ctx.workloads if selects(selector, w.labels)]
        if not selector or not pods:
            continue
        ports: set[int] = set()
        for svc in ctx.services.values():
            if svc.selector and any(w.namespace == svc.namespace and selects(svc.selector, w.labels) for w in pods):
                ports.update(p.number for p in svc.ports)
        for i, s in enumerate(spec.servers):
            if s.port.number not in ports:
                yield new("IST0104", gw, selector_string(selector), s.port.number, field=f"spec.servers[{i}].port")


def analyze(ctx: Context) -> Iterator[Message]:
    yield from conflicting(ctx)
    yield from ports_on_workload(ctx)
