"""A whole mesh on one host for end-to-end tests: the real control plane
(`istiod-py serve` as a subprocess, on files), real Envoy sidecars bootstrapped
with `istiod_py.agent.bootstrap`, each bound to its own 127.x address.

    mesh = Mesh(tmp_path, envoy_factory)
    mesh.write("svc.yaml", SERVICES)
    mesh.start()
    sc = mesh.sidecar("client", labels={"app": "client"})
    mesh.wait_listener(sc, "127.x.y.z_9080")
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from istiod_py.agent.bootstrap import BootstrapOptions, build_bootstrap

from .envoy import EnvoyFactory, EnvoyProcess, admin_address
from .net import allocate_ip, free_port


class Mesh:
    def __init__(
        self,
        workdir: Path,
        envoys: EnvoyFactory,
        *,
        delta: bool = False,
        mesh_config: Mapping[str, Any] | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.config_dir = self.workdir / "config"
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.envoys = envoys
        self.delta = delta
        self.mesh_config = mesh_config
        self.extra_args = list(extra_args or [])
        self.host = "127.0.0.1"
        self.xds_port = 0
        self.debug_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "istiod.log"

    # --- config files ----------------------------------------------------------

    def write(self, name: str, text: str) -> Path:
        """Write (or replace) a config file atomically, so the watcher never sees half a file."""
        path = self.config_dir / name
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        return path

    def remove(self, name: str) -> None:
        (self.config_dir / name).unlink(missing_ok=True)

    # --- control plane -----------------------------------------------------------

    def start(self, timeout: float = 20.0) -> Mesh:
        # A fresh loopback address per control plane: no port races between tests.
        self.host = allocate_ip()
        self.xds_port = free_port(self.host)
        self.debug_port = free_port(self.host)
        args = [
            sys.executable,
            "-m",
            "istiod_py.cli",
            "serve",
            "--config-dir",
            str(self.config_dir),
            "--listen-address",
            self.host,
            "--xds-port",
            str(self.xds_port),
            "--debug-port",
            str(self.debug_port),
            "--debounce-quiet",
            "0.05",
            "--no-ca",
            "--log-level",
            "info",
            *self.extra_args,
        ]
        if self.mesh_config is not None:
            mc = self.workdir / "mesh.yaml"
            mc.write_text(yaml.safe_dump(dict(self.mesh_config)), encoding="utf-8")
            args += ["--mesh-config", str(mc)]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"istiod-py exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://{self.host}:{self.debug_port}/ready", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"istiod-py not ready in {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if getattr(self, "_log", None) is not None:
            self._log.close()

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def debug(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://{self.host}:{self.debug_port}{path}", timeout=5) as r:
            return json.loads(r.read())

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://{self.host}:{self.debug_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def metric(self, name: str, labels: str = "") -> float:
        total = 0.0
        for line in self.metrics().splitlines():
            if line.startswith(name) and (not labels or labels in line) and not line.startswith("#"):
                head, _, value = line.rpartition(" ")
                if head.split("{")[0] in (name, name + "_total"):
                    total += float(value)
        return total

    # --- proxies -------------------------------------------------------------------

    def sidecar(
        self,
        name: str,
        *,
        ip: str | None = None,
        labels: Mapping[str, str] | None = None,
        namespace: str = "default",
        service_account: str = "default",
        proxy_type: str = "sidecar",
        delta: bool | None = None,
        wait: bool = True,
    ) -> EnvoyProcess:
        """Start an Envoy connected to the control plane. Its node IP is `ip` (fresh if None)."""
        ip = ip or allocate_ip()
        admin_host, admin_port = admin_address()
        opts = BootstrapOptions(
            proxy_type=proxy_type,
            ip=ip,
            name=name,
            namespace=namespace,
            service_account=service_account,
            labels=dict(labels or {}),
            interception_mode="NONE",
            discovery_address=f"{self.host}:{self.xds_port}",
            admin_address=admin_host,
            admin_port=admin_port,
            delta=self.delta if delta is None else delta,
        )
        proc = self.envoys(build_bootstrap(opts), name=name, wait=wait)
        proc.node_ip = ip  # type: ignore[attr-defined]
        return proc

    def gateway(self, name: str, **kw: Any) -> EnvoyProcess:
        return self.sidecar(name, proxy_type="router", **kw)

    # --- waiting -----------------------------------------------------------------

    @staticmethod
    def wait(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = cond()
                if last:
                    return last
            except Exception as e:  # retry until the deadline
                last = e
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")

    def wait_listener(self, envoy: EnvoyProcess, name: str, timeout: float = 10.0) -> None:
        self.wait(lambda: name in envoy.listener_names(), timeout, f"listener {name} on {envoy.name}")

    def wait_cluster(self, envoy: EnvoyProcess, name: str, timeout: float = 10.0) -> None:
        self.wait(lambda: name in envoy.cluster_names(), timeout, f"cluster {name} on {envoy.name}")

    def wait_synced(self, timeout: float = 10.0) -> None:
        """Every connected proxy has the latest state and ACKed everything sent."""

        def synced() -> bool:
            st = self.debug("/debug/push_status")
            return bool(st["proxies"]) and all(p["synced"] for p in st["proxies"])

        self.wait(synced, timeout, "all proxies synced")
