"""Debug endpoints of provenance and NACK quarantine (xds/quarantine.py).

- `/debug/quarantinez`: per proxy, the rejected resources, Envoy's message, the
  Istio configs (and fields) blamed, and the bisect/quarantine phase.
- `/debug/provenancez?proxyID=ID[&type=LDS]`: per resource the proxy gets, the
  Istio configs it was built from.
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
        return _json({"proxy": stream.info.proxy.id, "state_version": stream.state.version, "resources": out})

    debug.extra_routes.append(("/debug/quarantinez", quarantinez))
    debug.extra_routes.append(("/debug/provenancez", provenancez))
