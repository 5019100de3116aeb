"""The live mesh page on the debug port: /mesh (HTML) polls /debug/meshz (JSON) every
second and redraws in place: services and workloads, connected proxies and their
sync state (SYNCED / STALE with the NACK), recent pushes, NACKs with the resource
names Envoy rejected, and the who-may-call-whom graph (debug/mesh_graph.py).

Polling rather than SSE: one GET a second per open page costs nothing next to a
push, survives control plane restarts without reconnect logic, and needs no
long-lived handler on the debug server."""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web

from istiod_py.debug.xds_views import XdsViews, json_response

if TYPE_CHECKING:
    from istiod_py.model import MeshState


def status(t: dict[str, Any] | None) -> str:
    if not t or not t.get("nonce_sent"):
        return "NOT SENT"
    if (t.get("last_nack") or {}).get("quarantined"):  # as proxy-status: served without what it rejected
        return "STALE (Quarantined)"
    if t.get("nonce_sent") == t.get("nonce_acked"):
        return "SYNCED"
    return "STALE" if t.get("nonce_acked") else "STALE (Never Acknowledged)"


class MeshPage:
    def __init__(self, state: Callable[[], MeshState], xds_views: XdsViews, history: Callable[[], list[Any]]) -> None:
        self.state = state
        self.xds_views = xds_views
        self.history = history
        self._graph: tuple[tuple[int, tuple[str, ...]], dict[str, Any]] | None = None
        self._analysis: tuple[int, list[Any]] = (-1, [])

    def routes(self) -> list[tuple[str, Any, str]]:
        return [
            ("/mesh", self.handle_page, "the live mesh page (HTML)"),
            ("/debug/meshz", self.handle_meshz, "the mesh page's data: services, proxies, pushes, NACKs, graph"),
        ]

    async def handle_page(self, _: web.Request) -> web.Response:
        # No external assets: the page must work on a debug port without internet access.
        page = resources.files("istiod_py.debug").joinpath("static/mesh.html").read_text(encoding="utf-8")
        return web.Response(text=page, content_type="text/html")

    def graph(self, state: MeshState) -> dict[str, Any]:
        from istiod_py.debug.mesh_graph import graph

        proxies = [s.info.proxy for s in self.xds_views.connected() if s.info]
        key = (state.version, tuple(sorted(p.id for p in proxies)))
        if self._graph is None or self._graph[0] != key:  # once per state and set of proxies
            self._graph = (key, graph(state, proxies))
        return self._graph[1]

    def analysis(self, state: MeshState) -> list[Any]:
        """istioctl-analyze messages for the running state, once per state version."""
        if self._analysis[0] != state.version:
            from istiod_py.config.analyzers.context import Context
            from istiod_py.config.analyzers.runner import run

            configs = [c for items in state.configs.values() for c in items]
            ctx = Context(configs, state.services, state.endpoints, state.mesh.trust_domain,
                          state.mesh.root_namespace, tuple(state.gateway_api_status))  # fmt: skip
            self._analysis = (state.version, run(ctx))
        return self._analysis[1]

    async def handle_meshz(self, _: web.Request) -> web.Response:
        st = self.state()
        proxies = []
        nacks = []
        for s in self.xds_views.connected():
            entry = self.xds_views.syncz_entry(s)
            types = entry["types"]
            proxies.append(
                {
                    "id": entry["proxy"],
                    "transport": entry["transport"],
                    "stateVersion": entry["state_version"],
                    "status": {k: status(types.get(k)) for k in ("CDS", "LDS", "EDS", "RDS", "SDS")},
                }
            )
            for k, t in types.items():
                n = t.get("last_nack")
                if n:
                    nacks.append(
                        {
                            "proxy": entry["proxy"],
                            "type": k,
                            "message": n["message"],
                            "resources": n["resource_names"],
                            "at": n["at"],
                            # Still the newest response: the proxy runs on older config until a fix is pushed.
                            "current": n["nonce"] == t.get("nonce_sent"),
                        }
                    )
        services = [
            {
                "host": host,
                "namespace": svc.namespace,
                "ports": [f"{p.number}/{p.protocol.value}" for p in svc.ports],
                "endpoints": len(st.endpoints.get(host, ())),
            }
            for host, svc in sorted(st.services.items())
        ]
        return json_response(
            {
                "time": time.time(),
                "stateVersion": st.version,
                "services": services,
                "proxies": sorted(proxies, key=lambda p: str(p["id"])),
                "nacks": sorted(nacks, key=lambda n: -float(n["at"]))[:20],
                "pushes": list(reversed(self.history()[-15:])),
                "graph": self.graph(st),
                "analysis": [str(m) for m in self.analysis(st)][:50],
            }
        )
