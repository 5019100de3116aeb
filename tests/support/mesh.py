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

import glob
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from istiod_py.agent.bootstrap import BootstrapOptions, build_bootstrap
from istiod_py.config.loader import IGNORED_KINDS

from .envoy import EnvoyFactory, EnvoyProcess, admin_address
from .net import allocate_ip, free_port
from .processes import stop_process


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

    def start(self, timeout: float = 20.0, host: str | None = None) -> Mesh:
        # A fresh loopback address per control plane: no port races between tests.
        # `host`: listen there instead (e.g. a test bridge that pods in network namespaces reach).
        self.host = host or allocate_ip()
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
        stop_process(self.proc)
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
        stats_port: int = 0,
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
            stats_port=stats_port,
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

    # --- `kubectl apply -f` / `kubectl delete -f` on the config directory -----------
    #
    # Added for the bookinfo task tests. Istio's tasks apply files one after another,
    # and a later file replaces resources an earlier one created (both
    # virtual-service-all-v1.yaml and virtual-service-reviews-test-v2.yaml define
    # VirtualService `reviews`). Copying both files into the config dir would load
    # two `reviews`; `apply()` keeps the cluster's semantics instead: every
    # document is written VERBATIM to its own file under config/applied/, named
    # `Kind.namespace.name.<hash of the text>.yaml`, replacing the file of the same
    # resource. It returns when the control plane serves exactly those files (seen
    # in /debug/configz) and every connected proxy has ACKed the result.

    @property
    def applied_dir(self) -> Path:
        return self.config_dir / "applied"

    @staticmethod
    def split_documents(text: str) -> list[tuple[tuple[str, str, str], str]]:
        """YAML text -> [((kind, namespace, name), document text verbatim)], empty documents dropped."""
        out: list[tuple[tuple[str, str, str], str]] = []
        for chunk in re.split(r"(?m)^---[ \t]*(?:#.*)?$\n?", text):
            body = yaml.safe_load(chunk)
            if not body:
                continue
            if not isinstance(body, dict) or not body.get("kind"):
                raise ValueError(f"not a Kubernetes object: {chunk[:200]!r}")
            meta = body.get("metadata") or {}
            key = (str(body["kind"]), str(meta.get("namespace") or "default"), str(meta.get("name") or ""))
            out.append((key, chunk if chunk.endswith("\n") else chunk + "\n"))
        return out

    def _resource_files(self, key: tuple[str, str, str]) -> list[Path]:
        kind, ns, name = key
        return sorted(self.applied_dir.glob(f"{glob.escape(f'{kind}.{ns}.{name}')}.*.yaml"))

    def apply(self, *sources: Path | str, timeout: float = 15.0, sync: bool = True) -> list[Path]:
        """`kubectl apply -f` each source (a Path is a file, a str is YAML text), in order.

        Returns the files now holding the applied documents. With `sync`, waits until
        the control plane loaded them and every proxy is synced; a load error on one
        of them fails at once with the control plane's message."""
        self.applied_dir.mkdir(parents=True, exist_ok=True)
        written: dict[tuple[str, str, str], Path] = {}
        removed: list[Path] = []
        for source in sources:
            text = source.read_text(encoding="utf-8") if isinstance(source, Path) else source
            for key, doc in self.split_documents(text):
                digest = hashlib.sha256(doc.encode()).hexdigest()[:12]
                path = self.applied_dir / f"{key[0]}.{key[1]}.{key[2]}.{digest}.yaml"
                for old in self._resource_files(key):
                    if old != path:
                        old.unlink()
                        removed.append(old)
                if not path.exists():
                    tmp = path.with_suffix(".tmp")
                    tmp.write_text(doc, encoding="utf-8")
                    os.replace(tmp, path)
                written[key] = path
        paths = list(written.values())
        if sync:
            self.wait_config(present=paths, absent=[p for p in removed if p not in paths], timeout=timeout)
        return paths

    def delete(self, *sources: Path | str, timeout: float = 15.0, sync: bool = True) -> None:
        """`kubectl delete -f`: remove the resources the sources define (missing ones are fine)."""
        removed: list[Path] = []
        for source in sources:
            text = source.read_text(encoding="utf-8") if isinstance(source, Path) else source
            for key, _ in self.split_documents(text):
                for old in self._resource_files(key):
                    old.unlink()
                    removed.append(old)
        if sync:
            self.wait_config(present=[], absent=removed, timeout=timeout)

    def wait_config(self, *, present: list[Path], absent: list[Path], timeout: float = 15.0) -> None:
        """Wait until /debug/configz has a resource from every `present` file (Istio
        kinds; other kinds are not listed there) and none from an `absent` one, then
        until every proxy is synced."""
        want = {os.path.realpath(p) for p in present if _istio_kind(p)}
        gone = {os.path.realpath(p) for p in absent}

        def loaded() -> bool:
            cz = self.debug("/debug/configz")
            mine = [e for e in cz["errors"] if any(Path(p).name in e for p in want)]
            if mine:
                raise _ConfigRejected("; ".join(mine))
            sources = {os.path.realpath(c["source"]) for c in cz["configs"]}
            return want <= sources and not (gone & sources)

        deadline = time.monotonic() + timeout
        while True:
            try:
                if loaded():
                    break
            except _ConfigRejected as e:
                raise AssertionError(f"the control plane rejected applied config: {e}") from None
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for configz to show {sorted(want)} "
                    f"and drop {sorted(gone)}:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        self.wait_synced(max(1.0, deadline - time.monotonic()))

    # --- with the CA: workload certificates through `istiod-py agent` ---------------
    #
    # Added for mutual TLS tests. `start_with_ca()` runs the control plane with its
    # CA (root kept in <workdir>/ca, bearer tokens in <workdir>/ca-tokens.yaml) and
    # the secure port; `agent_sidecar()` starts a sidecar through
    # `python -m istiod_py.cli agent`, which gets a certificate, serves SDS and runs
    # Envoy. Calling `stop()` then `start_with_ca()` again restarts the control
    # plane on the same ports and CA directory.

    secure_port: int = 0  # set by start_with_ca()
    webhook_port: int = 0  # set by start_with_ca() with --kubeconfig

    @property
    def ca_dir(self) -> Path:
        return self.workdir / "ca"

    @property
    def root_cert(self) -> Path:
        return self.ca_dir / "root-cert.pem"

    @property
    def ca_token_file(self) -> Path:
        return self.workdir / "ca-tokens.yaml"

    def start_with_ca(self, timeout: float = 20.0) -> Mesh:
        for attr in ("xds_port", "debug_port", "secure_port"):
            if not getattr(self, attr, 0):
                setattr(self, attr, free_port(self.host))
        if not self.ca_token_file.exists():
            self._write_tokens({})
        args = [
            sys.executable, "-m", "istiod_py.cli", "serve",
            "--config-dir", str(self.config_dir),
            "--listen-address", self.host,
            "--xds-port", str(self.xds_port),
            "--debug-port", str(self.debug_port),
            "--secure-port", str(self.secure_port),
            "--ca-dir", str(self.ca_dir),
            "--token-file", str(self.ca_token_file),
            "--debounce-quiet", "0.05",
            "--log-level", "info",
            *self.extra_args,
        ]  # fmt: skip
        if "--kubeconfig" in self.extra_args and "--webhook-port" not in self.extra_args:
            # serve --kubeconfig also serves the admission webhooks (15017 by default):
            # a free port, so that control planes of one test (replicas) do not collide.
            if not getattr(self, "webhook_port", 0):
                self.webhook_port = free_port(self.host)
            args += ["--webhook-port", str(self.webhook_port)]
        if self.mesh_config is not None:
            mc = self.workdir / "mesh.yaml"
            mc.write_text(yaml.safe_dump(dict(self.mesh_config)), encoding="utf-8")
            args += ["--mesh-config", str(mc)]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"istiod-py exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://{self.host}:{self.debug_port}/ready", timeout=1) as r:
                    if r.status == 200 and self.root_cert.exists():
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"istiod-py (with CA) not ready in {timeout}s:\n{self.log_tail()}")

    def _write_tokens(self, tokens: Mapping[str, tuple[str, str]]) -> None:
        doc = {"tokens": {t: {"namespace": ns, "serviceAccount": sa} for t, (ns, sa) in tokens.items()}}
        tmp = self.ca_token_file.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(doc), encoding="utf-8")
        os.replace(tmp, self.ca_token_file)

    def _token_for(self, namespace: str, service_account: str) -> str:
        tokens: dict[str, tuple[str, str]] = self.__dict__.setdefault("_tokens", {})
        token = f"token-{namespace}-{service_account}"
        if token not in tokens:
            tokens[token] = (namespace, service_account)
            self._write_tokens(tokens)
        return token

    def agent_sidecar(
        self,
        name: str,
        *,
        ip: str | None = None,
        labels: Mapping[str, str] | None = None,
        namespace: str = "default",
        service_account: str = "default",
        cert_ttl: float | None = None,
        rotation_fraction: float | None = None,
        xds_tls: bool = False,
        wait: bool = True,
        timeout: float = 20.0,
        proxy_type: str = "sidecar",
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> AgentSidecar:
        """A sidecar with workload certificates: `istiod-py agent` (key + CSR to the
        CA with a bearer token, SDS on a unix socket, Envoy). Stopped with the
        test's other Envoys. `proxy_type="router"` runs a gateway (`--type router`):
        its file-mounted server certificates come from the agent over SDS."""
        ip = ip or allocate_ip()
        admin_host, admin_port = admin_address()
        workdir = self.workdir / "agents" / name
        workdir.mkdir(parents=True, exist_ok=True)
        token_path = workdir / "token"
        token_path.write_text(self._token_for(namespace, service_account), encoding="utf-8")
        lbl = ",".join(f"{k}={v}" for k, v in (labels or {}).items())
        args = [
            sys.executable, "-m", "istiod_py.cli", "agent",
            "--name", name, "--ip", ip, "--namespace", namespace,
            "--service-account", service_account,
            "--interception-mode", "NONE",
            "--discovery-address", f"{self.host}:{self.xds_port}",
            "--ca-address", f"{self.host}:{self.secure_port}",
            "--root-cert", str(self.root_cert),
            "--token-file", str(token_path),
            "--workdir", str(workdir),
            "--admin-address", admin_host, "--admin-port", str(admin_port),
        ]  # fmt: skip
        if lbl:
            args += ["--labels", lbl]
        if self.delta:
            args.append("--delta")
        if cert_ttl is not None:
            args += ["--cert-ttl", str(cert_ttl)]
        if rotation_fraction is not None:
            args += ["--rotation-fraction", str(rotation_fraction)]
        if xds_tls:
            args.append("--xds-tls")  # xDS over TLS on the secure port, verified by the mesh root
        if proxy_type != "sidecar":
            args += ["--type", proxy_type]
        args += list(extra_args)
        proc = AgentSidecar(args, name=name, workdir=workdir, admin=(admin_host, admin_port), env=env)
        proc.node_ip = ip
        self.envoys.started.append(proc)  # the envoy_factory fixture stops it
        proc.start()
        if wait:
            proc.wait_ready(timeout)
        return proc


class AgentSidecar(EnvoyProcess):
    """A sidecar run by `istiod-py agent`: the process is the agent, which runs
    Envoy; the admin helpers of EnvoyProcess talk to that Envoy. Stopping the
    agent (SIGTERM) stops its Envoy. The log holds both."""

    def __init__(
        self,
        args: list[str],
        *,
        name: str,
        workdir: Path,
        admin: tuple[str, int],
        env: Mapping[str, str] | None = None,
    ) -> None:
        bootstrap = {"admin": {"address": {"socket_address": {"address": admin[0], "port_value": admin[1]}}}}
        super().__init__(bootstrap, name=name, workdir=workdir)
        self.args = args
        self.env = {**os.environ, **env} if env else None
        self.node_ip = ""
        self.log_path = workdir / "agent.log"

    def start(self) -> EnvoyProcess:
        if self.proc is not None:
            raise RuntimeError(f"agent {self.name} already started")
        self._start_time = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                env=self.env,
            )
        return self

    def stop(self, timeout: float = 12.0) -> int | None:
        # The agent waits for its Envoy to exit: give it longer than Envoy alone.
        return super().stop(timeout)


class _ConfigRejected(Exception):
    """The control plane reported a load error for a file `Mesh.apply()` wrote."""


def _istio_kind(path: Path) -> bool:
    """Whether the resource in an `applied/Kind.ns.name.hash.yaml` file is listed by /debug/configz
    (Istio config is; Kubernetes Services, EndpointSlices and ignored kinds are not)."""
    kind = Path(path).name.split(".", 1)[0]
    return kind not in IGNORED_KINDS and kind not in ("Service", "EndpointSlice")
