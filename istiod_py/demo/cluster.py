"""A real Kubernetes control plane on loopback, for the capture demo and the kube
tests: etcd, kube-apiserver, kube-controller-manager and kube-scheduler built from
Go modules by scripts/kube/build.sh (cached outside the repo) and started by
scripts/kube/up.sh on free 127.0.0.1 ports, stopped by scripts/kube/down.sh.

    cluster = LocalCluster(run_dir).start()
    cluster.client.get("/api/v1/namespaces")
    cluster.restart_apiserver()          # same port, same etcd
    cluster.stop()

tests/support/kube.py builds its test helpers on this class."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from istiod_py.kube.client import KubeClient

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts" / "kube"


class ClusterError(RuntimeError):
    """The binaries could not be built or the control plane did not start (the message has the logs)."""


def build(timeout: float = 3600.0, show_progress: bool = False) -> Path:
    """Builds the binaries if the cache lacks them (cold: 6-10 min); returns the bin dir.
    With show_progress the build's log goes to this process's stderr as it runs."""
    out = subprocess.run(
        [str(SCRIPTS / "build.sh")],
        stdout=subprocess.PIPE,
        stderr=None if show_progress else subprocess.PIPE,
        text=True,
        timeout=timeout,
        check=False,
    )
    if out.returncode != 0:
        raise ClusterError(f"scripts/kube/build.sh failed ({out.returncode}):\n{(out.stderr or '')[-4000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


def cached_bin_dir() -> Path | None:
    """The bin dir if every binary is already built (nothing is built here), else None."""
    try:
        out = subprocess.run(
            [str(SCRIPTS / "build.sh"), "--cached"], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError:
        return None
    lines = out.stdout.strip().splitlines()
    return Path(lines[-1]) if out.returncode == 0 and lines else None


class LocalCluster:
    """The control plane under `run_dir` (pid files, logs, pki, etcd data, kubeconfig)."""

    COMPONENTS = ("kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler")

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.kubeconfig = self.run_dir / "kubeconfig"
        self._client: KubeClient | None = None

    def start(self, timeout: float = 3600.0, apiserver_args: str = "", scheduler: bool = True) -> LocalCluster:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "KUBE_APISERVER_ARGS": apiserver_args, "KUBE_SCHEDULER": "1" if scheduler else "0"}
        out = subprocess.run(
            [str(SCRIPTS / "up.sh"), str(self.run_dir)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
            # Its own session, and so etcd's and the apiserver's: a Ctrl-C in the demo's terminal
            # must not stop them before the demo has removed what it made through them.
            start_new_session=True,
        )
        if out.returncode != 0:
            raise ClusterError(
                f"scripts/kube/up.sh failed ({out.returncode}):\n{out.stderr[-4000:]}\n{self.log_tails()}"
            )
        self.kubeconfig = Path(out.stdout.strip().splitlines()[-1])
        return self

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        subprocess.run([str(SCRIPTS / "down.sh"), str(self.run_dir)], capture_output=True, timeout=120, check=False)

    def restart_apiserver(self) -> None:
        out = subprocess.run(
            [str(SCRIPTS / "up.sh"), "--restart-apiserver", str(self.run_dir)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            start_new_session=True,
        )
        if out.returncode != 0:
            raise ClusterError(f"restarting kube-apiserver failed:\n{out.stderr[-3000:]}\n{self.log_tails()}")

    def log_tails(self, lines: int = 20) -> str:
        parts = []
        for name in self.COMPONENTS:
            p = self.run_dir / f"{name}.log"
            if p.exists():
                tail = "\n".join(p.read_text(errors="replace").splitlines()[-lines:])
                parts.append(f"--- {name}.log ---\n{tail}")
        return "\n".join(parts)

    @property
    def client(self) -> KubeClient:
        if self._client is None:
            self._client = KubeClient.from_kubeconfig(str(self.kubeconfig))
        return self._client
