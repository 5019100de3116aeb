"""The agent's merged metrics (Istio's 15020 `/stats/prometheus`, served by the
agent's one status server, agent/status.py): the agent's own counters, then
Envoy's Prometheus stats with Istio's exact request metric names, then the app's
own metrics (Istio's metrics merging, which lets the one prometheus.io/* scrape
annotation the injector sets collect all three).

Envoy prefixes every stat with `envoy_`; the stats access logger's request metrics
(translate/telemetry/metrics.py, prefix `istio`) come out as `envoy_istio_*` and are
renamed here to `istio_*`, so this endpoint serves `istio_requests_total` as
Istio's does, without a relabel in the scrape config.

As pilot-agent, a failed part is logged and counted
(`istio_agent_scrape_failures_total{type=...}`) and the rest is still served:
an app whose metrics endpoint is down must not hide Envoy's metrics.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import ClientSession, ClientTimeout, web

log = logging.getLogger("istiod_py.agent.metrics")
PATH = "/stats/prometheus"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text"
ANNOTATIONS_ENV = "ISTIO_PROMETHEUS_ANNOTATIONS"
# Prometheus' scrape headers, passed on to Envoy and the app as pilot-agent does.
_FORWARDED = ("Accept", "User-Agent", "X-Prometheus-Scrape-Timeout-Seconds")


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


def app_metrics_url(annotations: str, status_port: int, host: str = "127.0.0.1") -> str:
    """The app's metrics URL from ISTIO_PROMETHEUS_ANNOTATIONS (the pod's own
    prometheus.io/scrape, path and port, which the injector moved there): "" when
    unset or scrape is "false"; path defaults to /metrics and port to 80, as
    pilot-agent's. A port equal to the agent's status port would scrape itself:
    refused (ValueError naming the variable and field), as pilot-agent refuses to start."""
    if not annotations.strip():
        return ""
    try:
        cfg = json.loads(annotations)
    except ValueError as e:
        raise ValueError(f"{ANNOTATIONS_ENV}: not JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{ANNOTATIONS_ENV}: expected a JSON object with scrape, path and port")
    if str(cfg.get("scrape") or "") == "false":
        return ""
    path = str(cfg.get("path") or "/metrics")
    port = str(cfg.get("port") or "80")
    if not port.isdigit():
        raise ValueError(f"{ANNOTATIONS_ENV}: field port {port!r} is not a port number")
    if status_port and int(port) == status_port:
        raise ValueError(
            f"{ANNOTATIONS_ENV}: field port {port} is the agent's status port (the scrape would loop); "
            "remove prometheus.io/port from the pod or do not inject it twice"
        )
    return f"http://{host}:{port}{path if path.startswith('/') else '/' + path}"


@dataclass
class MergedMetrics:
    """The PATH handler: agent counters, Envoy's stats (from its admin), the app's."""

    envoy_admin: str | None  # host:port of Envoy's admin; None when the agent runs no Envoy
    app_url: str = ""  # the app's own Prometheus endpoint, "" for none
    timeout_s: float = 5.0
    scrapes: int = 0
    failures: dict[str, int] = field(default_factory=lambda: {"envoy": 0, "application": 0})
    _session: ClientSession | None = None

    def _client(self) -> ClientSession:
        if self._session is None:
            self._session = ClientSession(timeout=ClientTimeout(total=self.timeout_s))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _fetch(self, url: str, headers: Mapping[str, str]) -> tuple[str, str]:
        total = self.timeout_s
        raw = headers.get("X-Prometheus-Scrape-Timeout-Seconds", "")
        try:
            total = min(float(raw), self.timeout_s) if raw else total
        except ValueError:
            log.warning("ignoring X-Prometheus-Scrape-Timeout-Seconds %r", raw)
        fwd = {k: headers[k] for k in _FORWARDED if k in headers}
        async with self._client().get(url, headers=fwd, timeout=ClientTimeout(total=total)) as r:
            if r.status != 200:
                raise RuntimeError(f"{url}: status {r.status}")
            return await r.text(), r.headers.get("Content-Type", "")

    def _agent_metrics(self) -> str:
        lines = [
            "# HELP istio_agent_scrapes_total The total number of scrapes.",
            "# TYPE istio_agent_scrapes_total counter",
            f"istio_agent_scrapes_total {self.scrapes}",
            "# HELP istio_agent_scrape_failures_total The total number of failed scrapes.",
            "# TYPE istio_agent_scrape_failures_total counter",
            *(f'istio_agent_scrape_failures_total{{type="{t}"}} {n}' for t, n in sorted(self.failures.items())),
        ]
        return "\n".join(lines) + "\n"

    async def handle(self, request: web.Request) -> web.Response:
        self.scrapes += 1
        query = f"?{request.query_string}" if request.query_string else ""
        parts: list[tuple[str, str]] = []
        if self.envoy_admin is not None:
            parts.append(("envoy", f"http://{self.envoy_admin}{PATH}{query}"))
        if self.app_url:
            parts.append(("application", self.app_url))
        results = await asyncio.gather(*(self._fetch(u, request.headers) for _, u in parts), return_exceptions=True)
        got: dict[str, tuple[str, str]] = {}
        for (kind, url), res in zip(parts, results, strict=True):
            if isinstance(res, BaseException):
                self.failures[kind] += 1
                log.warning("%s metrics from %s unavailable: %s", kind, url, res)
            else:
                got[kind] = res
        body = self._agent_metrics()
        if "envoy" in got:
            body += istio_names(got["envoy"][0])
        content_type = CONTENT_TYPE
        if "application" in got:
            text, app_type = got["application"]
            # Last, as pilot-agent: an OpenMetrics app ends with `# EOF`, and its format is the response's.
            body += text if text.endswith("\n") else text + "\n"
            if app_type.startswith(OPENMETRICS):
                content_type = app_type
        return web.Response(body=body.encode(), headers={"Content-Type": content_type})


@dataclass
class MetricsMerger:
    """PATH alone on (host, port), for embedding the merge without the agent's status
    server (the agent itself serves it on its status port: agent/status.py)."""

    host: str
    port: int
    envoy_admin: str  # host:port of Envoy's admin
    app_url: str = ""
    timeout_s: float = 5.0

    async def start(self) -> None:
        self._merged = MergedMetrics(self.envoy_admin, self.app_url, self.timeout_s)
        app = web.Application()
        app.router.add_get(PATH, self._merged.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def stop(self) -> None:
        await self._merged.close()
        await self._runner.cleanup()
