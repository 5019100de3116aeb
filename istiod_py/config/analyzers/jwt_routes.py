"""IST0149 JwtClaimBasedRoutingWithoutRequestAuthN, as Istio's jwtclaimroute
analyzer: a gateway VirtualService that matches on `@request.auth.claims.*`
headers while no RequestAuthentication applies to the gateway's workloads (the
claims are then never set, so the route never matches)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from istiod_py.config.analyzers.context import Context, Workload, full_name, selects
from istiod_py.config.analyzers.messages import Message, new

CLAIM_PREFIX = "@request.auth.claims"


def _claim_keys(spec: Any) -> list[tuple[str, str]]:
    out = []
    for i, r in enumerate(spec.http):
        for j, m in enumerate(r.match):
            for k in m.headers:
                if k.startswith(CLAIM_PREFIX):
                    out.append((f"spec.http[{i}].match[{j}].headers", k))
    return out


def _authenticated(ctx: Context, w: Workload) -> bool:
    for ra in ctx.of("RequestAuthentication"):
        if ra.meta.namespace not in (w.namespace, ctx.root_namespace):
            continue
        spec: Any = ra.spec
        sel = dict(spec.selector.match_labels) if spec.HasField("selector") else {}
        if selects(sel, w.labels):
            return True
    return False


def analyze(ctx: Context) -> Iterator[Message]:
    gateways = {full_name(g): g for g in ctx.of("Gateway")}
    for vs in ctx.of("VirtualService"):
        spec: Any = vs.spec
        keys = _claim_keys(spec)
        if not keys:
            continue
        for ref in spec.gateways:
            gw = gateways.get(ref if "/" in ref else f"{vs.meta.namespace}/{ref}")
            if gw is None:
                continue
            selector = dict(gw.spec.selector)  # type: ignore[attr-defined]
            for w in ctx.workloads:
                if selector and selects(selector, w.labels) and not _authenticated(ctx, w):
                    for path, key in keys:
                        yield new("IST0149", vs, key, full_name(gw), f"{w.namespace}/{w.name}", field=path)
