"""The agent's status ports, as pilot-agent serves them for the kubelet:

- readiness (15021) and status (15020) `/healthz/ready`: 200 once the workload
  certificate is issued and Envoy's admin `/ready` says LIVE (Envoy reports LIVE
  only after its first listeners and clusters arrived), else 503. Istio serves
  15021 from an Envoy listener that forwards to the agent; here the agent answers
  it directly, with the same answer.
- status (15020) `/app-health/<container>/{readyz,livez,startupz}`: the app's own
  probes, rewritten to the agent at injection (inject/probes.py) and described
  in ISTIO_KUBE_APP_PROBERS, run from inside the pod: an HTTP GET (2xx/3xx is
  healthy, as the kubelet judges) or a TCP connect to the app on 127.0.0.1 —
  never captured, so a STRICT mTLS sidecar does not refuse the kubelet's probe.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import web

log = logging.getLogger("istiod_py.agent.status")


def parse_probers(text: str) -> dict[str, dict[str, Any]]:
    """ISTIO_KUBE_APP_PROBERS; a bad value is logged and ignored (the probes then fail, visibly)."""
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as e:
        log.error("ISTIO_KUBE_APP_PROBERS is not JSON (%s): app probes will fail", e)
        return {}
    if not isinstance(data, dict):
        log.error("ISTIO_KUBE_APP_PROBERS is not a JSON object: app probes will fail")
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, dict)}


class StatusServer:
    def __init__(
        self,
        cert_ready: Callable[[], bool],
        envoy_admin: str | None,
        probers: Mapping[str, dict[str, Any]],
        app_host: str = "127.0.0.1",
    ) -> None:
        self.cert_ready = cert_ready
        self.envoy_admin = envoy_admin  # "host:port", None when the agent runs no Envoy
        self.probers = dict(probers)
        self.app_host = app_host
        self._runners: list[web.AppRunner] = []
        self._session: aiohttp.ClientSession | None = None
        self.ports: list[int] = []

    def _session_get(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def ready(self) -> tuple[bool, str]:
        if not self.cert_ready():
            return False, "no workload certificate yet"
        if self.envoy_admin is None:
            return True, "ready"
        try:
            timeout = aiohttp.ClientTimeout(total=2)
            async with self._session_get().get(f"http://{self.envoy_admin}/ready", timeout=timeout) as r:
                body = (await r.text()).strip()
                if r.status == 200 and body == "LIVE":
                    return True, "ready"
                return False, f"envoy not ready: {body or r.status}"
        except (aiohttp.ClientError, TimeoutError) as e:
            return False, f"envoy admin unreachable: {e}"

    async def handle_ready(self, _: web.Request) -> web.Response:
        ok, why = await self.ready()
        return web.Response(status=200 if ok else 503, text=why + "\n")

    async def handle_app(self, request: web.Request) -> web.Response:
        prober = self.probers.get(request.path)
        if prober is None:
            return web.Response(status=404, text=f"no app prober for {request.path}\n")
        timeout = float(prober.get("timeoutSeconds") or 1)
        try:
            if "httpGet" in prober:
                ok, detail = await self._http(prober["httpGet"], timeout)
            elif "tcpSocket" in prober:
                ok, detail = await self._tcp(prober["tcpSocket"], timeout)
            else:
                ok, detail = False, "unsupported prober"
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            ok, detail = False, str(e) or type(e).__name__
        return web.Response(status=200 if ok else 500, text=detail + "\n")

    async def _http(self, spec: Mapping[str, Any], timeout: float) -> tuple[bool, str]:
        scheme = str(spec.get("scheme") or "HTTP").lower()
        host = str(spec.get("host") or self.app_host)
        path = str(spec.get("path") or "/")
        headers = {str(h["name"]): str(h["value"]) for h in spec.get("httpHeaders") or [] if "name" in h}
        url = f"{scheme}://{host}:{int(spec['port'])}{path if path.startswith('/') else '/' + path}"
        async with self._session_get().get(
            url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout), ssl=False, allow_redirects=False
        ) as r:
            return 200 <= r.status < 400, f"{url}: {r.status}"

    async def _tcp(self, spec: Mapping[str, Any], timeout: float) -> tuple[bool, str]:
        host = str(spec.get("host") or self.app_host)
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(spec["port"])), timeout)
        writer.close()
        await writer.wait_closed()
        return True, f"{host}:{spec['port']}: connected"

    async def start(self, address: str, status_port: int, readiness_port: int) -> list[int]:
        """Serves the status port (0: off) and the readiness port (0: off)."""
        for port, with_apps in ((status_port, True), (readiness_port, False)):
            if not port:
                continue
            app = web.Application()
            app.router.add_get("/healthz/ready", self.handle_ready)
            if with_apps:
                app.router.add_get("/app-health/{container}/{kind}", self.handle_app)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, address, port)
            await site.start()
            self._runners.append(runner)
            server = getattr(site, "_server", None)
            bound = server.sockets[0].getsockname()[1] if server is not None and server.sockets else port
            self.ports.append(int(bound))
        return self.ports

    async def stop(self) -> None:
        for r in self._runners:
            await r.cleanup()
        self._runners = []
        if self._session is not None:
            await self._session.close()
            self._session = None
