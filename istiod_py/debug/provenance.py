"""Debug endpoints of provenance and NACK quarantine (xds/quarantine.py).

- `/debug/quarantinez`: per proxy, the rejected resources, Envoy's message, the
  Istio configs (and fields) blamed, and the bisect/quarantine phase.
- `/debug/provenancez?proxyID=ID[&type=LDS]`: per resource the proxy gets, the
  Istio configs it was built from.
- `/debug/push_attribution[?window=600&limit=20]`: the config changes that
  triggered pushes, ranked by cost (xds/attribution.py), and the recent pushes.
- `/debug/statusz[?resource=Kind/ns/name]`: propagation status (xds/propagation.py):
  per config, the proxies it affects and those not yet holding its current content.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from istiod_py.xds.types import TypeUrl

if TYPE_CHECKING:
    from istiod_py.xds.server import XdsServer

    from .http import DebugServer


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, indent=1, default=str))


def register(debug: DebugServer, xds: XdsServer) -> None:
    async def quarantinez(_: web.Request) -> web.Response:
        return _json(xds.quarantine.debug())

    async def provenancez(req: web.Request) -> web.Response:
        pid = req.query.get("proxyID", "")
        stream = debug.find_stream(pid) if pid else None
        if stream is None or stream.info is None:
            known = [s.info.proxy.id for s in xds.streams.values() if s.info]
            return _json({"error": f"no connected proxy {pid!r}; connected: {known}"}, status=404)
        want = req.query.get("type", "")
        out: dict[str, dict[str, list[str]]] = {}
        for t in stream.info.watches:
            short = TypeUrl.SHORT.get(t, t)
            if want and want != short:
                continue
            res = xds.generate(stream.state, stream.proxy, t)
            out[short] = {n: sorted(res.origins_of(n)) for n in sorted(res.index)}
            # Sub-resources with their own record (virtual hosts: "9080/reviews...:9080").
            for part in res.parts:
                for key, refs in part.origins.items():
                    if "/" in key and key.split("/", 1)[0] in part.items:
                        out[short][key] = sorted(refs)
        return _json({"proxy": stream.info.proxy.id, "state_version": stream.state.version, "resources": out})

    async def statusz(req: web.Request) -> web.Response:
        from istiod_py.xds.propagation import propagation

        state = debug.state
        asked = req.query.get("resource", "")
        ref = _canonical(asked, state.configs) if asked else ""
        if ref is None:
            kinds = ", ".join(sorted(state.configs))
            return _json({"error": f"no config {asked!r} (Kind/namespace/name; kinds: {kinds})"}, 404)
        return _json({"state_version": state.version, "resources": propagation(xds, state, ref)})

    async def push_attribution(req: web.Request) -> web.Response:
        try:
            window = float(req.query.get("window", "600"))
            limit = int(req.query.get("limit", "20"))
        except ValueError:
            return _json({"error": "window (seconds) and limit must be numbers"}, 400)
        att = xds.attribution
        return _json({"window_s": window, "top_triggers": att.top(window, limit), "recent": att.recent(limit)})

    debug.extra_routes.append(("/debug/push_attribution", push_attribution))
    debug.extra_routes.append(("/debug/statusz", statusz))
    debug.extra_routes.append(("/debug/quarantinez", quarantinez))
    debug.extra_routes.append(("/debug/provenancez", provenancez))


def _canonical(ref: str, configs: Any) -> str | None:
    """`Kind/ns/name` with the kind matched case-insensitively; None if no such config."""
    kind, _, rest = ref.partition("/")
    ns, _, name = rest.partition("/")
    for k, items in configs.items():
        if k.lower() == kind.lower():
            for c in items:
                if c.meta.namespace == ns and c.meta.name == name:
                    return f"{k}/{ns}/{name}"
    return None
