"""The demo's telemetry: a real Prometheus (Debian's package, scripts/install_prometheus.sh)
scraping every sidecar and the control plane with deploy/prometheus/prometheus.yml,
then the per-version request counts read back with PromQL."""

from __future__ import annotations

import json
import shutil
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "prometheus.yml"
PER_VERSION = 'sum(istio_requests_total{reporter="destination"}) by (destination_service_name, destination_version)'


def prometheus_command(workdir: Path, envoy_stats: list[str], istiod: str, listen: str) -> list[str] | None:
    """The command line of a Prometheus for the demo, or None when none is installed."""
    binary = shutil.which("prometheus")
    if binary is None:
        return None
    cfg = yaml.safe_load(DEPLOY.read_text())
    cfg["global"]["scrape_interval"] = "2s"
    d = workdir / "prometheus"
    d.mkdir(parents=True, exist_ok=True)
    (d / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    (d / "envoy-targets.json").write_text(json.dumps([{"targets": envoy_stats}]))
    (d / "istiod-targets.json").write_text(json.dumps([{"targets": [istiod]}]))
    return [
        binary,
        f"--config.file={d / 'prometheus.yml'}",
        f"--storage.tsdb.path={d / 'data'}",
        f"--web.listen-address={listen}",
        "--log.level=warn",
    ]


def query(listen: str, promql: str) -> list[dict[str, Any]]:
    url = f"http://{listen}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=3) as r:
        return list(json.loads(r.read())["data"]["result"])


def show_per_version(listen: str, wait: float = 8.0) -> None:
    time.sleep(wait)  # two scrapes after the traffic
    try:
        rows = query(listen, PER_VERSION)
    except OSError as e:
        print(f"\nprometheus at {listen} did not answer: {e}")
        return
    print(f"\nrequests per service version, from Prometheus (http://{listen}, PromQL: {PER_VERSION}):")
    for r in sorted(
        rows,
        key=lambda r: (r["metric"].get("destination_service_name", ""), r["metric"].get("destination_version", "")),
    ):
        m = r["metric"]
        name, version = m.get("destination_service_name", "?"), m.get("destination_version", "?")
        print(f"  {int(float(r['value'][1])):5d}  {name} {version}")
    print(
        "traces: add a Telemetry with a zipkin/opentelemetry provider (see tests/e2e/test_telemetry_tracing.py) and\n"
        "run the collector scripts/build_jaeger.sh builds; its UI and /api/traces are on the jaeger_query endpoint."
    )
