"""Pods as Linux network namespaces: the one-host node (istiod_py/node) and the
capture tests (tests/support/netns.py re-exports this module).

A `NetnsLab` owns one private /24 (10.244.K.0/24, K chosen so that no
interface on the host already uses it): a bridge on the host side with
10.244.K.1 (where a control plane under test may listen), and one network
namespace per pod joined to the bridge by a veth pair, the pod's `eth0` holding
10.244.K.N. Pods get no default route: they reach only the lab's /24 and the
lab's service-VIP range (10.245.K.0/24, or the cluster's service CIDR when the
node gives one), which is on-link on eth0 and answered by nobody, so a VIP is
reachable only through a sidecar's capture (or the node's service rules,
istiod_py/node/services.py, which play kube-proxy inside each pod). Nothing is
added to the host's own interfaces, and `close()` (also run on interpreter exit
and for leftovers of dead test processes) deletes every namespace, link and
process the lab made. Needs root, `ip` and (for capture) `iptables-restore`.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from istiod_py.inject.iptables import CaptureConfig, apply

PREFIX = "ipy"  # namespaces ipy<pid>-<pod>, bridge ipyb<pid>, veths ipyv<pid>x<n>
PROXY_UID = 1337


def pod_key(uid: str) -> str:
    """The short name a pod's namespace, veth and state directory carry."""
    return uid.replace("-", "")[:10]


def pod_netns(node_pid: int, uid: str) -> str:
    """The network namespace `istiod-py node` (process `node_pid`) runs the pod `uid` in."""
    return f"{PREFIX}{node_pid}-{pod_key(uid)}"


class NetnsUnavailable(RuntimeError):
    """The machine cannot run the lab (not root, no `ip`/`iptables-restore`)."""


def require_netns() -> None:
    """Fail loudly (never skip) when the lab cannot run here."""
    if os.geteuid() != 0:
        raise NetnsUnavailable("network-namespace tests need root (they create namespaces, veths and a bridge)")
    for tool in ("ip", "iptables-restore", "setpriv"):
        if shutil.which(tool) is None:
            raise NetnsUnavailable(f"{tool} is not installed; run scripts/install_netns_tools.sh")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def _used_octets() -> set[int]:
    out = _ip("-o", "-4", "addr", "show").stdout
    return {int(m.group(1)) for m in re.finditer(r"inet 10\.24[45]\.(\d+)\.", out)}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_netns_processes(netns: str) -> None:
    """SIGKILL whatever still runs in `netns` (deleting a namespace does not end its processes)."""
    for pid in _ip("netns", "pids", netns, check=False).stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def reap_stale() -> None:
    """Delete namespaces (and their processes) and bridges left by lab owners that no longer run."""
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        m = re.match(rf"({PREFIX}(\d+)-\S+)", line)
        if m and not _pid_alive(int(m.group(2))):
            _kill_netns_processes(m.group(1))
            _ip("netns", "del", m.group(1), check=False)
    etc = Path("/etc/netns")  # per-namespace hosts files the node writes (node/services.py)
    for d in etc.glob(f"{PREFIX}*-*") if etc.is_dir() else ():
        m = re.match(rf"{PREFIX}(\d+)-", d.name)
        if m and not _pid_alive(int(m.group(1))):
            shutil.rmtree(d, ignore_errors=True)
    for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
        m = re.match(rf"\d+: ({PREFIX}[bv](\d+)\w*)[@:]", line)
        if m and not _pid_alive(int(m.group(2))):
            _ip("link", "del", m.group(1), check=False)


def as_user(
    args: Sequence[str], *, uid: int | None = None, gid: int | None = None, caps: Sequence[str] = ()
) -> list[str]:
    """`args` as `uid`/`gid` (setpriv) keeping the capabilities `caps`; unchanged when uid is None."""
    if uid is None:
        return list(args)
    g = uid if gid is None else gid
    cmd = ["setpriv", f"--reuid={uid}", f"--regid={g}", "--clear-groups"]
    if caps:
        keep = ",".join(f"+{c}" for c in caps)
        cmd += [f"--inh-caps={keep}", f"--ambient-caps={keep}"]
    return [*cmd, "--", *args]


@dataclass
class Pod:
    name: str
    netns: str
    ip: str
    lab: NetnsLab
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def command(
        self, args: Sequence[str], *, uid: int | None = None, gid: int | None = None, caps: Sequence[str] = ()
    ) -> list[str]:
        """`args` run inside this pod's namespace, as `uid`/`gid` when given, keeping
        the capabilities `caps` (e.g. "net_admin", which a TPROXY proxy needs)."""
        return ["ip", "netns", "exec", self.netns, *as_user(args, uid=uid, gid=gid, caps=caps)]

    def start(
        self, args: Sequence[str], *, uid: int | None = None, gid: int | None = None, **popen: Any
    ) -> subprocess.Popen[bytes]:
        """A process inside the pod; the lab stops it on close."""
        proc: subprocess.Popen[bytes] = subprocess.Popen(
            self.command(args, uid=uid, gid=gid), start_new_session=True, **popen
        )
        self.procs.append(proc)
        return proc

    def run(
        self, args: Sequence[str], *, uid: int | None = None, timeout: float = 30.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.command(args, uid=uid), capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{self.name}: {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def capture(self, cfg: CaptureConfig | None = None) -> None:
        """Install the sidecar capture rules (`istiod-py iptables`) in this pod."""
        apply(cfg or CaptureConfig(), self.netns)

    def capture_init(self, annotations: Mapping[str, str]) -> None:
        """The injected init step: `istiod-py iptables --annotations ...` run inside the pod."""
        self.run([sys.executable, "-m", "istiod_py.cli", "iptables", "--annotations", json.dumps(dict(annotations))])

    def iptables_save(self) -> str:
        return self.run(["iptables-save"]).stdout

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.procs.clear()


class NetnsLab:
    def __init__(self, service_cidr: str | None = None) -> None:
        require_netns()
        reap_stale()
        self.owner = os.getpid()
        used = _used_octets()
        k = next((k for k in range(10 + self.owner % 200, 255) if k not in used), None)
        if k is None:
            k = next(k for k in range(1, 255) if k not in used)
        self.octet = k
        self.subnet = f"10.244.{k}.0/24"
        self.host_ip = f"10.244.{k}.1"
        self.vip_subnet = service_cidr or f"10.245.{k}.0/24"
        self.bridge = f"{PREFIX}b{self.owner}"
        self.pods: dict[str, Pod] = {}
        self._lock = threading.Lock()
        self._closed = False
        _ip("link", "add", self.bridge, "type", "bridge")
        atexit.register(self.close)
        try:
            _ip("addr", "add", f"{self.host_ip}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        except BaseException:
            self.close()
            raise

    def vip(self, n: int) -> str:
        return f"10.245.{self.octet}.{n}"

    def pod(self, name: str) -> Pod:
        """A new namespace `ipy<pid>-<name>` with eth0 on the bridge and lo up (thread-safe:
        the node starts pods from several threads)."""
        with self._lock:
            if name in self.pods:
                raise ValueError(f"pod {name} already exists in this lab")
            taken = {int(p.ip.rsplit(".", 1)[1]) for p in self.pods.values()}
            n = next((i for i in range(10, 255) if i not in taken), 0)
            if not n:
                raise RuntimeError(f"no free address left in {self.subnet}")
            netns = f"{PREFIX}{self.owner}-{name}"
            ip = f"10.244.{self.octet}.{n}"
            pod = Pod(name, netns, ip, self)
            self.pods[name] = pod
            host_if = self._host_if(pod)
            # A veth of a pod that had this address may outlive its namespace for a moment.
            _ip("link", "del", host_if, check=False)
            _ip("netns", "add", netns)
            _ip("link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _ip("link", "set", host_if, "master", self.bridge, "up")
        for args in (
            ("addr", "add", f"{ip}/24", "dev", "eth0"),
            ("link", "set", "eth0", "up"),
            ("link", "set", "lo", "up"),
            # Service VIPs: on-link and answered by nobody; only capture reaches them.
            ("route", "add", self.vip_subnet, "dev", "eth0"),
        ):
            _ip("-n", netns, *args)
        return pod

    def _host_if(self, pod: Pod) -> str:
        return f"{PREFIX}v{self.owner}x{pod.ip.rsplit('.', 1)[1]}"

    def remove_pod(self, name: str) -> None:
        """Stop the pod's processes and delete its namespace and veth pair."""
        with self._lock:
            pod = self.pods.get(name)
        if pod is None:
            return
        pod.stop_all()
        _kill_netns_processes(pod.netns)
        _ip("netns", "del", pod.netns, check=False)
        _ip("link", "del", self._host_if(pod), check=False)
        with self._lock:
            self.pods.pop(name, None)  # only now may another pod take its address

    def workdir(self, base: Path, name: str) -> Path:
        """A directory the proxy UID can write (tmp_path is root's, mode 0700)."""
        d = base / name
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(base, 0o755)
        os.chown(d, PROXY_UID, PROXY_UID)
        return d

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # A snapshot: a pod's deletion may still be finishing on another thread (remove_pod).
        with self._lock:
            pods = list(self.pods.values())
        for pod in pods:
            pod.stop_all()
        for pod in pods:
            _kill_netns_processes(pod.netns)  # anything a test started there and did not stop
            _ip("netns", "del", pod.netns, check=False)  # takes the veth pair with it
        _ip("link", "del", self.bridge, check=False)
        # Per-namespace /etc dirs (hosts files) of this lab's pods, also of pods already
        # removed: a late writer must not leave one behind.
        etc = Path("/etc/netns")
        for d in etc.glob(f"{PREFIX}{self.owner}-*") if etc.is_dir() else ():
            shutil.rmtree(d, ignore_errors=True)
        atexit.unregister(self.close)

    def __enter__(self) -> NetnsLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def netns_lab() -> Iterator[NetnsLab]:
    lab = NetnsLab()
    try:
        yield lab
    finally:
        lab.close()
