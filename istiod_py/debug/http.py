"""Debug and metrics HTTP endpoints (port 15014), as JSON.

/ready, /version, /metrics, /debug/syncz, /debug/configz, /debug/registryz,
/debug/config_dump?proxyID=, /debug/push_status."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from google.protobuf import json_format
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from istiod_py.xds.types import TypeUrl

if TYPE_CHECKING:
    from istiod_py.model import MeshState
    from istiod_py.xds.pipeline import PushPipeline
    from istiod_py.xds.server import Stream, XdsServer


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
        self.extra_routes: list[tuple[str, Callable[[web.Request], Any]]] = []
        self._warnings: tuple[int, list[Any]] = (-1, [])

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/ready", self.handle_ready)
        app.router.add_get("/version", self.handle_version)
        app.router.add_get("/metrics", self.handle_metrics)
        app.router.add_get("/debug/syncz", self.handle_syncz)
        app.router.add_get("/debug/configz", self.handle_configz)
        app.router.add_get("/debug/registryz", self.handle_registryz)
        app.router.add_get("/debug/config_dump", self.handle_config_dump)
        app.router.add_get("/debug/push_status", self.handle_push_status)
        app.router.add_get("/debug", self.handle_index)
        for path, handler in self.extra_routes:
            app.router.add_route("*", path, handler)  # any method: /debug/preview takes a POST
        return app

    @property
    def state(self) -> MeshState:
        return self.pipeline.state

    async def handle_index(self, _: web.Request) -> web.Response:
        return _json({"endpoints": sorted(r.resource.canonical for r in _.app.router.routes() if r.resource)})

    async def handle_ready(self, _: web.Request) -> web.Response:
        if self.ready():
            return web.Response(text="ready\n")
        return web.Response(text="not ready\n", status=503)

    async def handle_version(self, _: web.Request) -> web.Response:
        """What `istiod-py version --debug-address` shows for the control plane."""
        import platform
        from importlib.metadata import PackageNotFoundError, version

        def of(dist: str) -> str:
            try:
                return version(dist)
            except PackageNotFoundError:
                return "unknown"

        return _json({"version": of("istiod_py"), "python": platform.python_version(), "grpcio": of("grpcio")})

    async def handle_metrics(self, _: web.Request) -> web.Response:
        body = b"".join(generate_latest(r) for r in self.registries)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def handle_syncz(self, _: web.Request) -> web.Response:
        out = []
        for s in list(self.xds.streams.values()):
            if s.info is None:
                continue
            out.append(
                {
                    "proxy": s.info.proxy.id,
                    "connection_id": s.info.conn_id,
                    "node_id": s.info.proxy.node_id,
                    # Versions the proxy's agent put in its node metadata (`istiod-py version`).
                    "istio_version": str(s.info.proxy.metadata.get("ISTIO_VERSION") or ""),
                    "envoy_version": str(s.info.proxy.metadata.get("ENVOY_VERSION") or ""),
                    "transport": "delta" if s.delta else "sotw",
                    "peer": s.info.peer,
                    "connected_at": s.info.connected_at,
                    "pushes": s.info.pushes,
                    "state_version": s.state.version,
                    "types": {TypeUrl.SHORT.get(t, t): w.debug() for t, w in s.info.watches.items()},
                }
            )
        return _json(out)

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
                # Gateway API status conditions (what istiod writes to the resources' status).
                "gatewayApiStatus": [
                    {"kind": st.kind, "namespace": st.namespace, "name": st.name, "status": st.as_dict()}
                    for st in self.state.gateway_api_status
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
        for s in list(self.xds.streams.values()):
            if s.info and proxy_id in (s.info.conn_id, s.info.proxy.id, s.info.proxy.node_id):
                return s
        return None

    async def handle_config_dump(self, req: web.Request) -> web.Response:
        pid = req.query.get("proxyID", "")
        stream = self.find_stream(pid) if pid else None
        if stream is None or stream.info is None:
            known = [s.info.proxy.id for s in self.xds.streams.values() if s.info]
            return _json({"error": f"no connected proxy {pid!r}; connected: {known}"}, status=404)
        dump: dict[str, Any] = {}
        for t, w in stream.info.watches.items():
            res = self.xds.generate(stream.state, stream.proxy, t)
            names = sorted(res.index) if w.wildcard else sorted(n for n in w.names if n in res.index)
            if stream.delta:
                names = sorted(n for n in w.sent if n in res.index)
            dump[TypeUrl.SHORT.get(t, t)] = {
                "version_sent": w.version_sent,
                "version_acked": w.version_acked,
                "resources": [
                    json_format.MessageToDict(res.index[n].message(), preserving_proto_field_name=True) for n in names
                ],
            }
        return _json({"proxy": stream.info.proxy.id, "state_version": stream.state.version, "config": dump})

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
                # Which config changes cost the most over the last 10 minutes (xds/attribution.py).
                "top_triggers": self.xds.attribution.top(600.0),
                "time": now,
            }
        )
