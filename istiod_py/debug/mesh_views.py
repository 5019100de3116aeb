"""State debug views, as istiod serves them on :15014: /debug/instancesz (endpoints
per service), /debug/sidecarz?proxyID= (the proxy's Sidecar scope), /debug/mesh (the
mesh config in effect)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from istiod_py.debug.xds_views import XdsViews, json_response

if TYPE_CHECKING:
    from istiod_py.model import MeshState


class MeshViews:
    def __init__(self, state: Callable[[], MeshState], xds_views: XdsViews) -> None:
        self.state = state
        self.xds_views = xds_views
        self._translator: Any = None  # its own Translator, made on first use: describe is rare

    async def handle_describez(self, req: web.Request) -> web.Response:
        from istiod_py.debug import describe
        from istiod_py.translate.generate import Translator

        if self._translator is None:
            self._translator = Translator()
        kind, name = req.query.get("kind", "workload"), req.query.get("name", "")
        namespace = req.query.get("namespace", "default")
        if kind not in ("workload", "service") or not name:
            return json_response({"error": "kind=workload|service and name= are required"}, status=400)
        fn = describe.describe_service if kind == "service" else describe.describe_workload
        try:
            return json_response(fn(self._translator, self.state(), name, namespace))
        except describe.DescribeError as e:
            return json_response({"error": str(e)}, status=404)

    def routes(self) -> list[tuple[str, Any, str]]:
        return [
            ("/debug/instancesz", self.handle_instancesz, "endpoints (service instances) per service host"),
            ("/debug/sidecarz", self.handle_sidecarz, "?proxyID=: the proxy's Sidecar scope"),
            ("/debug/mesh", self.handle_mesh, "the mesh config in effect"),
            ("/debug/describez", self.handle_describez, "?kind=workload|service&name=: what applies (describe)"),
        ]

    async def handle_instancesz(self, _: web.Request) -> web.Response:
        st = self.state()
        out: dict[str, list[dict[str, Any]]] = {}
        for host, svc in sorted(st.services.items()):
            ports = {p.number: p for p in svc.ports}
            out[host] = [
                {
                    "service": host,
                    "namespace": svc.namespace,
                    "servicePort": {
                        "name": ports[e.service_port].name if e.service_port in ports else "",
                        "port": e.service_port,
                        "protocol": ports[e.service_port].protocol.value if e.service_port in ports else "",
                    },
                    "endpoint": {
                        "address": e.address,
                        "port": e.port,
                        "labels": dict(e.labels),
                        "serviceAccount": e.service_account,
                        "locality": e.locality,
                        "healthy": e.healthy,
                    },
                }
                for e in st.endpoints.get(host, ())
            ]
        return json_response(out)

    async def handle_sidecarz(self, req: web.Request) -> web.Response:
        from istiod_py.translate.context import PushContext  # the translator is heavy: import on use

        pid = req.query.get("proxyID", "")
        s = self.xds_views.find(pid) if pid else None
        if s is None or s.info is None:
            known = [x.info.proxy.id for x in self.xds_views.connected() if x.info]
            return json_response({"error": f"no connected proxy {pid!r}; connected: {known}"}, status=404)
        scope = PushContext(s.state).sidecar_scope(s.info.proxy)
        sc = scope.sidecar
        return json_response(
            {
                "proxy": s.info.proxy.id,
                "sidecar": f"{sc.meta.namespace}/{sc.meta.name}" if sc else None,
                "outboundTrafficPolicy": {"mode": scope.outbound_policy},
                "egress": [
                    {
                        "port": e.port.number if e.port else None,
                        "bind": e.bind,
                        "hosts": [f"{ns}/{h}" for ns, h in e.hosts.entries],
                    }
                    for e in scope.egress
                ],
                "ingress": [
                    {"port": i.port.number, "bind": i.bind, "defaultEndpoint": i.default_endpoint}
                    for i in scope.ingress
                ],
                "services": [svc.hostname for svc in scope.services],
                "stateVersion": s.state.version,
            }
        )

    async def handle_mesh(self, _: web.Request) -> web.Response:
        mc = self.state().mesh
        return json_response({f.name: getattr(mc, f.name) for f in dataclasses.fields(mc)})
