"""One Pod on the one-host node: its namespace, volumes, init containers,
containers (processes), probes and status, in one thread.

Lifecycle, as the kubelet's: namespace + IP (status Pending with podIP) ->
volumes (waits while a ConfigMap/Secret/ServiceAccount is missing) -> init
containers in order, each to completion (a failure is retried with back-off) ->
service rules (services.py, after the init containers so capture comes first)
-> containers started; a container that exits is restarted (restartPolicy
Always/OnFailure) with back-off, an unknown image waits with ErrImagePull ->
readiness probes (httpGet/tcpSocket to the pod IP across the node's bridge,
as the kubelet probes from the host) -> status patched whenever it changes.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from istiod_py.kube.client import JsonObj, KubeApiError, KubeClient

from . import images, services
from .netns import NetnsLab, Pod, as_user, pod_key
from .volumes import PodVolumes, VolumeNotReady, container_env, expand, rewrite_path

log = logging.getLogger("istiod_py.node")


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class Probe:
    spec: Mapping[str, Any]
    started: float = 0.0
    last: float = 0.0
    successes: int = 0
    failures: int = 0
    ok: bool = False


@dataclass
class Container:
    spec: Mapping[str, Any]
    argv: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    uid: int | None = None
    gid: int | None = None
    caps: tuple[str, ...] = ()
    waiting: tuple[str, str] | None = ("ContainerCreating", "")
    proc: subprocess.Popen[bytes] | None = None
    started_at: str = ""
    restarts: int = 0
    next_start: float = 0.0
    last_exit: int | None = None
    readiness: Probe | None = None
    startup: Probe | None = None

    @property
    def name(self) -> str:
        return str(self.spec["name"])


class PodRunner:
    def __init__(
        self,
        client: KubeClient,
        lab: NetnsLab,
        pod: JsonObj,
        state_dir: Path,
        env_base: Mapping[str, str],
        services_view: Callable[[], tuple[list[JsonObj], str]],
        kubeconfig: str = "",
    ) -> None:
        self.client = client
        self.lab = lab
        self.pod = pod
        meta = pod["metadata"]
        self.ns, self.name, self.uid = str(meta["namespace"]), str(meta["name"]), str(meta["uid"])
        self.key = pod_key(self.uid)
        # Short: unix sockets (the agent's SDS socket in its workdir volume) allow 107 bytes.
        self.dir = state_dir / "pods" / self.key
        self.env_base = dict(env_base)
        self.services_view = services_view
        self.stop_event = threading.Event()
        # Guards self.netns between the teardown and sync_services (called from the
        # node's service watch): a hosts write after the removal recreated /etc/netns/NETNS.
        self._netns_lock = threading.Lock()
        self.netns: Pod | None = None
        self.ip = ""
        # The control plane's image runs in the node's own namespace (as hostNetwork), where
        # it reaches the API server; its pod IP is the node's bridge address (images.py).
        spec = pod.get("spec") or {}
        self.host_network = bool(spec.get("hostNetwork")) or any(
            images.is_pilot(str(c.get("image"))) for c in spec.get("containers") or []
        )
        self.kubeconfig = kubeconfig
        self.containers: list[Container] = []
        self.init_done = False
        self.init_status: list[dict[str, Any]] = []
        self.message = ""
        self._last_status: dict[str, Any] | None = None
        self._rules = ""
        self._hosts = ""
        self.thread = threading.Thread(target=self._run, name=f"pod-{self.ns}/{self.name}", daemon=True)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.thread.start()

    def stop(self, grace: float = 5.0) -> None:
        """Stop the containers and delete the namespace and the pod's files (idempotent)."""
        self.stop_event.set()
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join(grace + 10)
        self._teardown(grace)

    def _teardown(self, grace: float) -> None:
        for c in self.containers:
            if c.proc is not None and c.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(c.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for c in self.containers:
            if c.proc is not None:
                try:
                    c.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(c.proc.pid, signal.SIGKILL)
                    c.proc.wait(5)
        with self._netns_lock:
            if self.netns is not None:
                services.remove_hosts(self.netns.netns)
                self.lab.remove_pod(self.key)
                self.netns = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def _run(self) -> None:
        try:
            self._setup()
            while not self.stop_event.is_set():
                self._tick()
                self.stop_event.wait(0.3)
        except Exception as e:  # the pod fails; the node keeps running
            log.exception("pod %s/%s failed", self.ns, self.name)
            self.message = f"{type(e).__name__}: {e}"
            with contextlib.suppress(Exception):
                self._patch_status(phase="Failed")

    def _setup(self) -> None:
        if self.host_network:
            self.ip = self.lab.host_ip
        else:
            self.netns = self.lab.pod(self.key)
            self.ip = self.netns.ip
        self.dir.mkdir(parents=True, exist_ok=True)
        for p in (self.dir, self.dir.parent, self.dir.parent.parent):
            os.chmod(p, 0o755)  # the proxy UID traverses to its volumes
        self.pod.setdefault("status", {})["podIP"] = self.ip
        self.pod["status"]["hostIP"] = self.lab.host_ip
        spec = self.pod.get("spec") or {}
        self.containers = [Container(c) for c in spec.get("containers") or []]
        self._patch_status()
        self.sync_services()
        vols = PodVolumes(self.client, self.pod, self.dir / "v")
        while True:
            try:
                vols.materialize()
                break
            except VolumeNotReady as e:
                self.message = str(e)
                self._patch_status()
                if self.stop_event.wait(1.0):
                    return
        self.volumes = vols
        for c in self.containers:
            self._prepare(c)
        self._run_inits(spec.get("initContainers") or [])
        if self.stop_event.is_set():
            return
        self.init_done = True
        self.sync_services()

    def _prepare(self, c: Container) -> None:
        spec, pod_spec = c.spec, self.pod.get("spec") or {}
        env = container_env(self.client, self.pod, spec)
        mounts = self.volumes.mounts(spec)
        env = {k: rewrite_path(v, mounts) for k, v in env.items()}
        # `command` would replace the image's entrypoint, which here is the mapped program itself.
        args = [rewrite_path(expand(str(a), env), mounts) for a in spec.get("args") or []]
        sc = {**(pod_spec.get("securityContext") or {}), **(spec.get("securityContext") or {})}
        c.uid = sc.get("runAsUser")
        c.gid = sc.get("runAsGroup")
        c.caps = tuple(str(x).lower() for x in ((sc.get("capabilities") or {}).get("add") or []))
        c.env = env
        labels = (self.pod.get("metadata") or {}).get("labels") or {}
        ports = tuple(int(p["containerPort"]) for p in spec.get("ports") or [] if p.get("containerPort"))
        try:
            c.argv = images.command(
                images.ContainerInput(
                    image=str(spec.get("image")),
                    args=tuple(args),
                    ports=ports,
                    pod_ip=self.ip,
                    kubeconfig=self.kubeconfig,
                    env=env,
                    labels=labels,
                    pod_name=self.name,
                )
            )
            c.waiting = ("ContainerCreating", "")
        except images.UnknownImage as e:
            c.argv = None
            c.waiting = ("ErrImagePull", f"pod {self.ns}/{self.name}: {e}")
        if spec.get("readinessProbe"):
            c.readiness = Probe(spec["readinessProbe"])
        if spec.get("startupProbe"):
            c.startup = Probe(spec["startupProbe"])

    def _user(self, c: Container) -> tuple[int | None, int | None]:
        """(uid, gid) the container runs as; (None, None) for root."""
        gid = c.gid if c.gid is not None else c.uid
        uid = c.uid
        if uid is None or (uid == 0 and not c.caps and gid in (None, 0)) or self.host_network:
            # root, as the image's default user; in the node's namespace root too: the
            # control plane reads the node's kubeconfig, which is root's
            return None, None
        return uid, gid

    def _command(self, c: Container) -> list[str]:
        assert c.argv is not None
        uid, gid = self._user(c)
        if self.netns is None:
            return as_user(c.argv, uid=uid, gid=gid, caps=c.caps)
        return self.netns.command(c.argv, uid=uid, gid=gid, caps=c.caps)

    def _popen(self, c: Container) -> subprocess.Popen[bytes]:
        workdir = self.dir / "containers" / c.name
        workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(workdir, 0o777)
        env = {**self.env_base, "HOSTNAME": self.name, "HOME": str(workdir), **c.env}
        with open(self.dir / f"{c.name}.log", "ab") as logf:
            uid, gid = self._user(c)
            if uid is not None:
                # The container's stdout is this file; a process that reopens it by name
                # (Envoy's access log to /dev/stdout, as the demo profile sets) needs to
                # own it, as a runtime's stdout pipe would allow.
                os.fchown(logf.fileno(), uid, gid if gid is not None else uid)
            return subprocess.Popen(
                self._command(c),
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=workdir,
                env=env,
                start_new_session=True,
            )

    def _run_inits(self, inits: list[Mapping[str, Any]]) -> None:
        self.init_status = [self._cstatus_waiting(i, "PodInitializing", "") for i in inits]
        for i, spec in enumerate(inits):
            c = Container(spec)
            self._prepare(c)
            attempt = 0
            while not self.stop_event.is_set():
                if c.argv is None:
                    assert c.waiting is not None
                    self.init_status[i] = self._cstatus_waiting(spec, *c.waiting)
                    self.message = c.waiting[1]
                    self._patch_status()
                    self.stop_event.wait(5.0)
                    continue
                c.proc = self._popen(c)
                rc = c.proc.wait()
                state = {
                    "terminated": {
                        "exitCode": rc,
                        "reason": "Completed" if rc == 0 else "Error",
                        "startedAt": now(),
                        "finishedAt": now(),
                    }
                }
                self.init_status[i] = {
                    **self._cstatus_base(spec, ready=rc == 0),
                    "state": state,
                    "restartCount": attempt,
                }
                self._patch_status()
                if rc == 0:
                    break
                attempt += 1
                self.message = f"init container {c.name} exited {rc}; see {self.dir / (c.name + '.log')}"
                self.stop_event.wait(min(10.0, 0.5 * 2**attempt))

    # ------------------------------------------------------------ running

    def sync_services(self) -> None:
        """Hosts file always; the DNAT rules once the init containers ran."""
        svcs, rules = self.services_view()
        with self._netns_lock:
            if self.netns is None:
                return
            hosts = services.hosts_file(svcs, self.ns, self.netns.ip, self.name)
            if hosts != self._hosts:
                services.write_hosts(self.netns.netns, hosts)
                self._hosts = hosts
            if self.init_done and rules != self._rules:
                services.apply_rules(self.netns.netns, rules)
                self._rules = rules

    def _tick(self) -> None:
        t = time.monotonic()
        policy = (self.pod.get("spec") or {}).get("restartPolicy") or "Always"
        for c in self.containers:
            if c.argv is None:
                continue
            if c.proc is not None and c.proc.poll() is not None:
                c.last_exit = c.proc.returncode
                c.proc = None
                c.readiness = Probe(c.readiness.spec) if c.readiness else None
                c.startup = Probe(c.startup.spec) if c.startup else None
                if policy == "Never" or (policy == "OnFailure" and c.last_exit == 0):
                    c.next_start = float("inf")
                else:
                    c.restarts += 1
                    c.next_start = t + min(30.0, 0.5 * 2**c.restarts)
                    c.waiting = ("CrashLoopBackOff", f"exited {c.last_exit}; see {self.dir / (c.name + '.log')}")
            if c.proc is None and t >= c.next_start:
                c.proc = self._popen(c)
                c.started_at = now()
                c.waiting = None
                for p in (c.readiness, c.startup):
                    if p is not None:
                        p.started = t
            if c.proc is not None:
                self._probe(c, t)
        self.volumes.refresh_tokens()
        for what in self.volumes.refresh_sources():
            log.info("pod %s/%s: %s changed; its volume files rewritten", self.ns, self.name, what)
        self._patch_status()

    def _probe(self, c: Container, t: float) -> None:
        for p in (c.startup, c.readiness):
            if p is None:
                continue
            if p is c.readiness and c.startup is not None and not c.startup.ok:
                return
            if p is c.startup and p.ok:
                continue
            spec = p.spec
            if t - p.started < float(spec.get("initialDelaySeconds") or 0):
                continue
            if p.last and t - p.last < float(spec.get("periodSeconds") or 10):
                continue
            p.last = t
            if self._check(c, spec):
                p.successes, p.failures = p.successes + 1, 0
                if p.successes >= int(spec.get("successThreshold") or 1):
                    p.ok = True
            else:
                p.successes, p.failures = 0, p.failures + 1
                if p.failures >= int(spec.get("failureThreshold") or 3):
                    p.ok = False

    def _port(self, c: Container, port: Any) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for p in c.spec.get("ports") or []:
            if p.get("name") == port:
                return int(p["containerPort"])
        raise ValueError(f"pod {self.ns}/{self.name}: {c.name}: probe port {port!r} names no containerPort")

    def _check(self, c: Container, spec: Mapping[str, Any]) -> bool:
        timeout = float(spec.get("timeoutSeconds") or 1)
        try:
            if "httpGet" in spec:
                h = spec["httpGet"]
                if str(h.get("scheme") or "HTTP").upper() != "HTTP":
                    return True  # HTTPS probes skip verification in the kubelet too; treat as passing
                conn = http.client.HTTPConnection(h.get("host") or self.ip, self._port(c, h["port"]), timeout=timeout)
                try:
                    headers = {x["name"]: x["value"] for x in h.get("httpHeaders") or []}
                    conn.request("GET", h.get("path") or "/", headers={"User-Agent": "kube-probe/1.37", **headers})
                    return 200 <= conn.getresponse().status < 400
                finally:
                    conn.close()
            if "tcpSocket" in spec:
                port = self._port(c, spec["tcpSocket"]["port"])
                with socket.create_connection((self.ip, port), timeout=timeout):
                    return True
        except (OSError, http.client.HTTPException, ValueError):
            return False
        return True  # exec/grpc probes: the image's commands do not exist here

    # ------------------------------------------------------------ status

    def _cstatus_base(self, spec: Mapping[str, Any], ready: bool) -> dict[str, Any]:
        image = str(spec.get("image"))
        return {"name": spec["name"], "image": image, "imageID": "", "ready": ready, "restartCount": 0}

    def _cstatus_waiting(self, spec: Mapping[str, Any], reason: str, message: str) -> dict[str, Any]:
        w = {"reason": reason, **({"message": message} if message else {})}
        return {**self._cstatus_base(spec, False), "state": {"waiting": w}, "started": False}

    def _container_status(self, c: Container) -> dict[str, Any]:
        if c.proc is None or c.waiting is not None:
            reason, message = c.waiting or ("ContainerCreating", "")
            st = self._cstatus_waiting(c.spec, reason, message)
        else:
            ready = (c.readiness.ok if c.readiness else True) and (c.startup.ok if c.startup else True)
            st = {
                **self._cstatus_base(c.spec, ready),
                "state": {"running": {"startedAt": c.started_at}},
                "started": c.startup.ok if c.startup else True,
            }
        st["restartCount"] = c.restarts
        if c.last_exit is not None:
            st["lastState"] = {
                "terminated": {"exitCode": c.last_exit, "reason": "Error" if c.last_exit else "Completed"}
            }
        return st

    def _patch_status(self, phase: str | None = None) -> None:
        statuses = [self._container_status(c) for c in self.containers]
        running = bool(statuses) and all("running" in s["state"] for s in statuses)
        ready = running and all(s["ready"] for s in statuses)
        phase = phase or ("Running" if self.init_done and any("running" in s["state"] for s in statuses) else "Pending")
        status: dict[str, Any] = {
            "phase": phase,
            "hostIP": self.lab.host_ip,
            "hostIPs": [{"ip": self.lab.host_ip}],
            "containerStatuses": statuses,
            "initContainerStatuses": self.init_status,
            "message": "" if ready else self.message,
        }
        if self.ip:
            status["podIP"] = self.ip
            status["podIPs"] = [{"ip": self.ip}]
        conds = {
            "PodReadyToStartContainers": bool(self.ip),
            "Initialized": self.init_done,
            "ContainersReady": ready,
            "Ready": ready,
            "PodScheduled": True,
        }
        if status == (self._last_status or {}).get("s") and conds == (self._last_status or {}).get("c"):
            return
        prev = {c["type"]: c for c in (self._last_status or {}).get("conditions", [])}
        conditions = []
        for k, v in conds.items():
            s = "True" if v else "False"
            old = prev.get(k)
            ts = old["lastTransitionTime"] if old and old["status"] == s else now()
            conditions.append({"type": k, "status": s, "lastTransitionTime": ts})
        if phase == "Failed" and self._last_status is None:
            status.pop("podIP", None)
        try:
            self.client.patch(
                f"/api/v1/namespaces/{self.ns}/pods/{self.name}/status",
                {"status": {**status, "conditions": conditions}},
            )
        except KubeApiError as e:
            if e.status == 404:
                self.stop_event.set()  # deleted meanwhile; the node's next sync tears it down
                return
            raise
        self._last_status = {"s": status, "c": conds, "conditions": conditions}
