"""A real Prometheus (Debian's `prometheus`, scripts/install_prometheus.sh) scraping
the test's proxies with deploy/prometheus/prometheus.yml, on a loopback address."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from .net import allocate_ip, free_port
from .processes import stop_process

DEPLOY_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "prometheus.yml"


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        raise AssertionError("prometheus is not installed: run scripts/install_prometheus.sh (test.sh does)")
    return path


class Prometheus:
    def __init__(self, workdir: Path, envoy_targets: Iterable[tuple[str, dict[str, str]]], istiod: str = "") -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        cfg = yaml.safe_load(DEPLOY_CONFIG.read_text())
        # Tests want fresh samples quickly; everything else is the deployed config.
        cfg["global"]["scrape_interval"] = "1s"
        cfg["global"]["evaluation_interval"] = "1s"
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(cfg))
        targets = [{"targets": [t], "labels": labels} for t, labels in envoy_targets]
        (workdir / "envoy-targets.json").write_text(json.dumps(targets))
        (workdir / "istiod-targets.json").write_text(json.dumps([{"targets": [istiod]}] if istiod else []))
        self.host = allocate_ip()
        self.port = free_port(self.host)
        self.log_path = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> Prometheus:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    prometheus_binary(),
                    f"--config.file={self.workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address={self.host}:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://{self.host}:{self.port}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"prometheus did not become ready: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        stop_process(self.proc)

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"http://{self.host}:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def by(self, promql: str, label: str) -> dict[str, float]:
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in self.query(promql)}

    def scalar(self, promql: str) -> float:
        res = self.query(promql)
        return float(res[0]["value"][1]) if res else float("nan")
