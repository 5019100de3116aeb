"""A real trace collector for the tracing e2e tests: Jaeger v1.75.0 built from Go
modules by scripts/build_jaeger.sh (cached outside the repo), run on loopback with
Zipkin and OTLP receivers, in-memory storage and its query API."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from .net import allocate_ip, free_port
from .processes import stop_process

REPO = Path(__file__).resolve().parents[2]


def jaeger_binary() -> str:
    try:
        out = subprocess.run(
            [str(REPO / "scripts" / "build_jaeger.sh")], check=True, capture_output=True, text=True, timeout=1800
        )
    except subprocess.CalledProcessError as e:
        raise AssertionError(f"scripts/build_jaeger.sh failed:\n{e.stderr[-3000:]}") from None
    return out.stdout.strip().splitlines()[-1]


class Jaeger:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.host = allocate_ip()
        self.zipkin_port, self.otlp_grpc_port, self.otlp_http_port, self.query_port, self.query_grpc_port = (
            free_port(self.host) for _ in range(5)
        )
        at = lambda port: f"{self.host}:{port}"  # noqa: E731
        cfg: dict[str, Any] = {
            "service": {
                "extensions": ["jaeger_storage", "jaeger_query"],
                "pipelines": {
                    "traces": {
                        "receivers": ["otlp", "zipkin"],
                        "processors": ["batch"],
                        "exporters": ["jaeger_storage_exporter"],
                    }
                },
                # No self-metrics listener (it would take a fixed port).
                "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "warn"}},
            },
            "extensions": {
                "jaeger_query": {
                    "storage": {"traces": "mem"},
                    "http": {"endpoint": at(self.query_port)},
                    "grpc": {"endpoint": at(self.query_grpc_port)},
                },
                "jaeger_storage": {"backends": {"mem": {"memory": {"max_traces": 100000}}}},
            },
            "receivers": {
                "otlp": {
                    "protocols": {
                        "grpc": {"endpoint": at(self.otlp_grpc_port)},
                        "http": {"endpoint": at(self.otlp_http_port)},
                    }
                },
                "zipkin": {"endpoint": at(self.zipkin_port)},
            },
            "processors": {"batch": {"timeout": "200ms"}},
            "exporters": {"jaeger_storage_exporter": {"trace_storage": "mem"}},
        }
        self.config_path = workdir / "jaeger.yaml"
        self.config_path.write_text(yaml.safe_dump(cfg))
        self.log_path = workdir / "jaeger.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Jaeger:
        binary = jaeger_binary()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [binary, "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                self.services()
                return self
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"jaeger did not start: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        stop_process(self.proc)

    def _get(self, path: str, **params: Any) -> Any:
        url = f"http://{self.host}:{self.query_port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read())

    def services(self) -> list[str]:
        return list(self._get("/api/services").get("data") or [])

    def traces(self, service: str, limit: int = 2000) -> list[dict[str, Any]]:
        return list(self._get("/api/traces", service=service, limit=limit, lookback="1h").get("data") or [])
