"""The agent's one HTTP server, pilot-agent's status port (15020):

- `/healthz/ready`: 200 once the workload certificate is issued and Envoy's admin
  `/ready` says LIVE (Envoy reports LIVE only after its first listeners and
  clusters arrived), else 503. The readiness port (15021) is, as in Istio, an
  Envoy listener that forwards `/healthz/ready` here (agent/bootstrap.py), so it
  answers only while Envoy itself serves.
- `/app-health/<container>/{readyz,livez,startupz}`: the app's own probes,
  rewritten to the agent at injection (inject/probes.py) and described in
  ISTIO_KUBE_APP_PROBERS, run from inside the pod: an HTTP GET (2xx/3xx is
  healthy, as the kubelet judges) or a TCP connect to the app on 127.0.0.1 —
  never captured, so a STRICT mTLS sidecar does not refuse the kubelet's probe.
- `/stats/prometheus` (and `/metrics`): the merged metrics (agent/metrics_merge.py),
  what the injector's `prometheus.io/port: 15020` annotation scrapes.
- `/quitquitquit` (POST, from loopback only): stops the agent and its Envoy, as
  pilot-agent's does for a Job whose app has finished.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import web

from istiod_py.agent.metrics_merge import MergedMetrics

log = logging.getLogger("istiod_py.agent.status")
_MAX_PROBE_BODY = 10 * 1024  # pilot-agent's limit on the app's probe body it passes on


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
    """The agent's one HTTP server (the paths in the module docstring)."""

    def __init__(
        self,
        cert_ready: Callable[[], bool],
        envoy_admin: str | None,
        probers: Mapping[str, dict[str, Any]],
        app_host: str = "127.0.0.1",
        *,
        metrics: MergedMetrics | None = None,
        on_quit: Callable[[], None] | None = None,
    ) -> None:
        self.cert_ready = cert_ready
        self.envoy_admin = envoy_admin  # "host:port", None when the agent runs no Envoy
        self.probers = dict(probers)
        self.app_host = app_host
        self.metrics = metrics if metrics is not None else MergedMetrics(envoy_admin)
        self.on_quit = on_quit
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

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
                return await self._http(prober["httpGet"], timeout)
            if "tcpSocket" in prober:
                ok, detail = await self._tcp(prober["tcpSocket"], timeout)
            else:
                ok, detail = False, "unsupported prober"
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            ok, detail = False, str(e) or type(e).__name__
        return web.Response(status=200 if ok else 500, text=detail + "\n")

    async def _http(self, spec: Mapping[str, Any], timeout: float) -> web.Response:
        """The app's status and (the start of) its body, as pilot-agent passes them on;
        a redirect is a 200 (the kubelet counts 3xx as healthy, and a 3xx without
        its Location would be malformed)."""
        scheme = str(spec.get("scheme") or "HTTP").lower()
        host = str(spec.get("host") or self.app_host)
        path = str(spec.get("path") or "/")
        headers = {str(h["name"]): str(h["value"]) for h in spec.get("httpHeaders") or [] if "name" in h}
        url = f"{scheme}://{host}:{int(spec['port'])}{path if path.startswith('/') else '/' + path}"
        async with self._session_get().get(
            url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout), ssl=False, allow_redirects=False
        ) as r:
            if 300 <= r.status < 400:
                return web.Response(status=200, text=f"{url}: {r.status}\n")
            body = await r.content.read(_MAX_PROBE_BODY)
            return web.Response(status=r.status, body=body)

    async def _tcp(self, spec: Mapping[str, Any], timeout: float) -> tuple[bool, str]:
        host = str(spec.get("host") or self.app_host)
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(spec["port"])), timeout)
        writer.close()
        await writer.wait_closed()
        return True, f"{host}:{spec['port']}: connected"

    async def handle_quit(self, request: web.Request) -> web.Response:
        # Only the pod itself may stop its proxy (pilot-agent's rule): the port is reachable from the network.
        if not _loopback(request.remote):
            return web.Response(status=403, text="only requests from localhost are allowed\n")
        if self.on_quit is None:
            return web.Response(status=404, text="quit is not enabled\n")
        log.info("/quitquitquit: stopping")
        self.on_quit()
        return web.Response(text="OK")

    async def start(self, address: str, port: int) -> int:
        """Serves every path on (address, port); returns the bound port (port 0: a free one)."""
        app = web.Application()
        app.router.add_get("/healthz/ready", self.handle_ready)
        app.router.add_get("/app-health/{container}/{kind}", self.handle_app)
        app.router.add_get("/stats/prometheus", self.metrics.handle)
        app.router.add_get("/metrics", self.metrics.handle)  # pilot-agent serves both paths
        app.router.add_post("/quitquitquit", self.handle_quit)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, address, port)
        await site.start()
        server = getattr(site, "_server", None)
        self.port = int(server.sockets[0].getsockname()[1]) if server is not None and server.sockets else port
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.metrics.close()
        if self._session is not None:
            await self._session.close()
            self._session = None


def _loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote.split("%")[0]).is_loopback
    except ValueError:
        return False
