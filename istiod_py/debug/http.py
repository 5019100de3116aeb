"""Debug and metrics HTTP endpoints (port 15014), as JSON.

This module: /ready, /version, /metrics, /debug/configz, /debug/registryz,
/debug/push_status, and the index (/debug, /debug/list). Per-connection views
(syncz, adsz, connections, config_dump, force_disconnect) are in xds_views.py;
state views (instancesz, sidecarz, mesh) in mesh_views.py."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from google.protobuf import json_format
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from istiod_py.debug.exposition import render
from istiod_py.debug.mesh_page import MeshPage
from istiod_py.debug.mesh_views import MeshViews
from istiod_py.debug.xds_views import XdsViews

if TYPE_CHECKING:
    from istiod_py.model import MeshState
    from istiod_py.xds.pipeline import PushPipeline
    from istiod_py.xds.server import Stream, XdsServer

Handler = Callable[[web.Request], Any]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: __import__("json").dumps(d, indent=1, default=str))


class DebugServer:
    def __init__(
        self,
        xds: XdsServer,
        pipeline: PushPipeline,
        registries: list[CollectorRegistry],
        errors: Callable[[], list[Any]],
        ready: Callable[[], bool],
    ) -> None:
        self.xds = xds
        self.pipeline = pipeline
        self.registries = registries
        self.errors = errors
        self.ready = ready
        self.extra_routes: list[tuple[str, Handler]] = []
        self._warnings: tuple[int, list[Any]] = (-1, [])
        # Subscribes to the xDS server's ACKs now, so config_dump has what proxies
        # ACK from their first connection on.
        self.xds_views = XdsViews(xds)
        self.mesh_views = MeshViews(lambda: self.pipeline.state, self.xds_views)
        self.mesh_page = MeshPage(lambda: self.pipeline.state, self.xds_views, lambda: self.pipeline.history)

    def endpoints(self) -> list[tuple[str, Handler, str]]:
        """Every endpoint once, with what it shows: the routes and the /debug index."""
        return [
            ("/ready", self.handle_ready, "200 once the first state is built"),
            ("/version", self.handle_version, "control plane version"),
            ("/metrics", self.handle_metrics, "Prometheus metrics"),
            ("/debug", self.handle_index, "this list"),
            ("/debug/list", self.handle_index, "this list"),
            ("/debug/configz", self.handle_configz, "loaded config, errors and analysis warnings"),
            ("/debug/registryz", self.handle_registryz, "services with their endpoints"),
            ("/debug/push_status", self.handle_push_status, "state version, proxies in sync, recent pushes"),
            *self.xds_views.routes(),
            *self.mesh_views.routes(),
            *self.mesh_page.routes(),
            *((path, handler, "") for path, handler in self.extra_routes),
        ]

    def app(self) -> web.Application:
        app = web.Application()
        for path, handler, _ in self.endpoints():
            app.router.add_get(path, handler)
        return app

    @property
    def state(self) -> MeshState:
        return self.pipeline.state

    async def handle_index(self, _: web.Request) -> web.Response:
        seen: dict[str, str] = {}
        for path, _h, what in self.endpoints():
            seen.setdefault(path, what)
        return _json({"endpoints": sorted(seen), "descriptions": seen})

    def sources_unavailable(self) -> list[Any]:
        """Config sources that cannot be read now (their last good config serves)."""
        from istiod_py.config.model import SourceUnavailable

        return [e for e in self.errors() if isinstance(e, SourceUnavailable)]

    async def handle_ready(self, _: web.Request) -> web.Response:
        # Still ready while a config directory is unavailable: the last good config
        # serves, and restarting would lose it. The body says so.
        detail = "".join(f"degraded: {e}\n" for e in self.sources_unavailable())
        if self.ready():
            return web.Response(text="ready\n" + detail)
        return web.Response(text="not ready\n" + detail, status=503)

    async def handle_version(self, _: web.Request) -> web.Response:
        """What `istiod-py version --debug-address` shows for the control plane."""
        import platform
        from importlib.metadata import PackageNotFoundError, version

        def of(dist: str) -> str:
            try:
                return version(dist)
            except PackageNotFoundError:
                return "unknown"

        return _json(
            {
                "version": of("istiod_py"),
                "python": platform.python_version(),
                "grpcio": of("grpcio"),
                # The ISTIOD column of `proxy-status`: which control plane instance a proxy talks to.
                "instance": f"istiod-py@{platform.node()}",
            }
        )

    async def handle_metrics(self, _: web.Request) -> web.Response:
        body = render(self.registries)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def handle_configz(self, _: web.Request) -> web.Response:
        configs = []
        for kind, items in sorted(self.state.configs.items()):
            for c in items:
                configs.append(
                    {
                        "kind": kind,
                        "apiVersion": c.meta.api_version,
                        "namespace": c.meta.namespace,
                        "name": c.meta.name,
                        "source": c.meta.source,
                        "spec": json_format.MessageToDict(c.spec),
                    }
                )
        return _json(
            {
                "version": self.state.version,
                "configs": configs,
                "errors": [str(e) for e in self.errors()],
                "warnings": [str(w) for w in self.warnings()],
                # istioctl analyze's view of the running state (IST codes, levels, origins).
                "analysis": [m.to_json() for m in self.mesh_page.analysis(self.state)],
                # Gateway API status conditions (what istiod writes to the resources' status).
                "gatewayApiStatus": [
                    {"kind": st.kind, "namespace": st.namespace, "name": st.name, "status": st.as_dict()}
                    for st in self.state.gateway_api_status
                ],
                "sources_unavailable": [
                    {"source": e.source, "since": e.since, "message": e.message} for e in self.sources_unavailable()
                ],
            }
        )

    def warnings(self) -> list[Any]:
        """istiod-style analysis (IST0101 ...) of the current state, once per state."""
        from istiod_py.config.analysis import analyze

        state = self.state
        if self._warnings[0] != state.version:
            configs = [c for items in state.configs.values() for c in items]
            self._warnings = (state.version, analyze(configs, state.services, state.mesh.trust_domain))
        return self._warnings[1]

    async def handle_registryz(self, _: web.Request) -> web.Response:
        out = []
        for host, svc in self.state.services.items():
            out.append(
                {
                    "hostname": host,
                    "namespace": svc.namespace,
                    "source": svc.source,
                    "resolution": svc.resolution.value,
                    "mesh_external": svc.mesh_external,
                    "addresses": list(svc.addresses),
                    "ports": [{"name": p.name, "port": p.number, "protocol": p.protocol.value} for p in svc.ports],
                    "endpoints": [
                        {
                            "address": e.address,
                            "port": e.port,
                            "service_port": e.service_port,
                            "labels": dict(e.labels),
                            "locality": e.locality,
                            "healthy": e.healthy,
                            "service_account": e.service_account,
                        }
                        for e in self.state.endpoints.get(host, ())
                    ],
                }
            )
        return _json(out)

    def find_stream(self, proxy_id: str) -> Stream | None:
        return self.xds_views.find(proxy_id)

    async def handle_push_status(self, _: web.Request) -> web.Response:
        now = time.time()
        conns = [
            {
                "proxy": s.info.proxy.id,
                "state_version": s.info.last_push_state,
                "synced": s.info.last_push_state >= self.state.version
                and all(w.nonce_acked == w.nonce_sent for w in s.info.watches.values()),
            }
            for s in list(self.xds.streams.values())
            if s.info
        ]
        return _json(
            {
                "state_version": self.state.version,
                "services": len(self.state.services),
                "configs": sum(len(v) for v in self.state.configs.values()),
                "connections": len(conns),
                "proxies": conns,
                "recent_pushes": self.pipeline.history[-20:],
                "time": now,
            }
        )
