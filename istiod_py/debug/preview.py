"""`POST /debug/preview[?proxy=ID&versions=1]` with a YAML bundle (the whole new
config directory's documents): what applying it would change for each
connected (or named) proxy, as `istiod-py preview` prints it (preview/plan.py).
400 names the file/resource/field when the bundle does not load."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from istiod_py.model import ProxyError
from istiod_py.preview import plan

if TYPE_CHECKING:
    from istiod_py.model import Proxy
    from istiod_py.xds.server import XdsServer

    from .http import DebugServer


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, indent=1, default=str))


def register(debug: DebugServer, xds: XdsServer, new_generator: Any) -> None:
    """`new_generator()` makes a translator of its own for the previewed state."""

    async def preview(req: web.Request) -> web.Response:
        if req.method != "POST":
            return _json({"error": "POST the new config as a YAML bundle"}, 405)
        text = await req.text()
        try:
            result = plan.load_bundle(text, req.query.get("source", "<preview bundle>"))
        except plan.PreviewError as e:
            return _json({"error": str(e)}, 400)
        state = debug.state
        new_state = plan.state_of(result, state.mesh, debug.pipeline.aggregator.sources)
        connected: dict[str, Proxy] = {}
        for s in list(xds.streams.values()):
            if s.info is not None:
                connected.setdefault(s.info.proxy.id, s.info.proxy)
        wanted = req.query.getall("proxy", [])
        proxies = []
        if wanted:
            for w in wanted:
                hit = next((p for p in connected.values() if w in (p.id, p.node_id)), None)
                if hit is None:
                    try:
                        hit = plan.named_proxy(w)
                    except ProxyError as e:
                        return _json({"error": f"proxy {w!r} is not connected and not a node id: {e}"}, 400)
                proxies.append(hit)
        else:
            proxies = [connected[k] for k in sorted(connected)]
        report = plan.preview(
            state, new_state, proxies, xds.generate, new_generator(), versions=req.query.get("versions") == "1"
        )
        return _json(report)

    debug.extra_routes.append(("/debug/preview", preview))
