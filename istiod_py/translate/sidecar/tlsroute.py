"""VirtualService `tls` routes on sidecar outbound listeners (ports whose
protocol is TLS or HTTPS), as istiod builds them (its
`buildSidecarOutboundTLSFilterChainOpts`).

The sidecar does not terminate the client's TLS: the tls_inspector reads the
SNI from the ClientHello and a filter chain per SNI set sends the bytes on with
tcp_proxy.

- each `tls` match that applies to this proxy (port, sourceLabels,
  sourceNamespace, gateways `mesh`) is a chain on its `sniHosts`, and on its
  `destinationSubnets` if any (else the service's own ranges);
- the same match predicates twice are built once (the first wins);
- with no applicable match, the service's default chain: SNI = the service
  host, to `outbound|PORT||HOST`. istiod leaves the SNI out when the service
  has a VIP of its own (the destination address tells it apart); a listener
  bound to one address (captureMode NONE) has no such address, so the SNI is
  what tells services apart there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from istiod_py.config.model import Config
from istiod_py.model import Proxy, Service

from ..context import PushContext
from .tcproute import L4Chain, default_chain, l4_match_applies, normalize_cidrs, virtual_services_for, vs_chain


def sni_names(hosts: Sequence[str]) -> tuple[str, ...]:
    """sniHosts as Envoy server_names: `*` alone means any SNI (no server_names)."""
    out: list[str] = []
    for h in hosts:
        h = h.strip().lower()
        if h and h != "*" and h not in out:
            out.append(h)
    return tuple(out)


def _match_key(m: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    # The predicates Envoy evaluates at runtime (istiod's hashRuntimeTLSMatchPredicates).
    return tuple(sorted(m.sni_hosts)), tuple(sorted(m.destination_subnets))


def tls_chains(
    ctx: PushContext,
    proxy: Proxy,
    svc: Service,
    port: int,
    service_cidrs: tuple[str, ...],
    *,
    sni_for_default: bool,
    vss: Sequence[Config] | None = None,
) -> list[L4Chain]:
    """Chains for TLS to `svc` on `port`. `sni_for_default`: whether the default
    chain must match the service host as SNI (no destination address of its own)."""
    if vss is None:
        vss = virtual_services_for(ctx, svc, proxy.namespace)
    out: list[L4Chain] = []
    handled: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
    for vs in vss:
        spec: Any = vs.spec
        for tls in spec.tls:
            if not tls.route:
                continue
            for m in tls.match:
                if not l4_match_applies(m, proxy, port, vs.meta.namespace):
                    continue
                key = _match_key(m)
                if key in handled:
                    continue
                handled.add(key)
                ranges = normalize_cidrs(list(m.destination_subnets)) or service_cidrs
                out.append(vs_chain(ctx, vs, list(tls.route), port, prefix_ranges=ranges,
                                    server_names=sni_names(m.sni_hosts)))  # fmt: skip
    if not out:
        names = (svc.hostname,) if sni_for_default else ()
        out.append(default_chain(svc, port, prefix_ranges=service_cidrs, server_names=names))
    return out
