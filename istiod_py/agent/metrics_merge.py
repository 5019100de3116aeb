"""The agent's merged metrics endpoint (Istio's 15020 /stats/prometheus): Envoy's
Prometheus stats with Istio's exact request metric names, followed by the app's
own metrics (Istio's metrics merging, which lets one prometheus.io/* annotation
scrape both).

Envoy prefixes every stat with `envoy_`; the stats access logger's request metrics
(translate/telemetry/metrics.py, prefix `istio`) come out as `envoy_istio_*` and are
renamed here to `istio_*`, so this endpoint serves `istio_requests_total` as
Istio's does, without a relabel in the scrape config.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiohttp import ClientSession, ClientTimeout, web

log = logging.getLogger("istiod_py.agent.metrics")
PATH = "/stats/prometheus"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def istio_names(text: str) -> str:
    """Envoy's exposition with `envoy_istio_*` families renamed to `istio_*`."""
    out = []
    for line in text.splitlines():
        if line.startswith("envoy_istio_"):
            line = line[len("envoy_") :]
        elif line.startswith(("# TYPE envoy_istio_", "# HELP envoy_istio_")):
            line = line[:7] + line[7 + len("envoy_") :]
        out.append(line)
    return "\n".join(out) + "\n"


@dataclass
class MetricsMerger:
    """Serves PATH on (host, port): Envoy's stats (from its admin) then the app's."""

    host: str
    port: int
    envoy_admin: str  # host:port of Envoy's admin
    app_url: str = ""  # the app's own Prometheus endpoint, "" for none
    timeout_s: float = 5.0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(PATH, self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self._session = ClientSession(timeout=ClientTimeout(total=self.timeout_s))

    async def stop(self) -> None:
        await self._session.close()
        await self._runner.cleanup()

    async def _fetch(self, url: str) -> str:
        async with self._session.get(url) as r:
            r.raise_for_status()
            return await r.text()

    async def handle(self, _: web.Request) -> web.Response:
        urls = [f"http://{self.envoy_admin}{PATH}", *([self.app_url] if self.app_url else [])]
        results = await asyncio.gather(*(self._fetch(u) for u in urls), return_exceptions=True)
        envoy = results[0]
        if isinstance(envoy, BaseException):
            return web.Response(status=503, text=f"envoy stats unavailable: {envoy}\n")
        body = istio_names(envoy)
        if len(results) > 1:
            app = results[1]
            if isinstance(app, BaseException):
                # Istio still serves Envoy's part when the app's endpoint fails.
                log.warning("app metrics from %s unavailable: %s", self.app_url, app)
            else:
                body += app if app.endswith("\n") else app + "\n"
        return web.Response(body=body.encode(), headers={"Content-Type": CONTENT_TYPE})
