"""ServiceEntry checks:

- IST0134 ServiceEntryAddressesRequired (Istio's protocoladdresses analyzer): no
  addresses while a port is TCP or has no protocol: istiod cannot tell its traffic
  apart from other TCP traffic on the port.
- IST0177: ServiceEntries that define the same host and port with different
  protocols (Istio 1.30's warning): which protocol the listener gets is arbitrary."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from istiod_py.config.analyzers.context import Context, full_name
from istiod_py.config.analyzers.messages import Message, go_list, new


def addresses_required(ctx: Context) -> Iterator[Message]:
    for se in ctx.of("ServiceEntry"):
        spec: Any = se.spec
        if spec.addresses:
            continue
        for i, p in enumerate(spec.ports):
            if p.protocol in ("", "TCP"):
                yield new("IST0134", se, field=f"spec.ports[{i}]")


def conflicting_protocols(ctx: Context) -> Iterator[Message]:
    seen: dict[tuple[str, int], dict[str, str]] = {}  # (host, port) -> {entry: protocol}
    entries: dict[str, Any] = {}
    for se in ctx.of("ServiceEntry"):
        spec: Any = se.spec
        entries[full_name(se)] = se
        for h in spec.hosts:
            for p in spec.ports:
                seen.setdefault((h, p.number), {})[full_name(se)] = (p.protocol or "TCP").upper()
    for (host, port), by_entry in sorted(seen.items()):
        protocols = sorted(set(by_entry.values()))
        if len(by_entry) < 2 or len(protocols) < 2:
            continue
        names = go_list(sorted(by_entry))
        for name in sorted(by_entry):
            yield new("IST0177", entries[name], names, host, port, go_list(protocols), field="spec.ports")


def analyze(ctx: Context) -> Iterator[Message]:
    yield from addresses_required(ctx)
    yield from conflicting_protocols(ctx)
