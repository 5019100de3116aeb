"""Kubernetes-source benchmark: a real API server holding N Services, their
EndpointSlices and P Pods each; `istiod-py serve --kubeconfig` watching it;
endpoint churn at a fixed rate. Prints a table:

- populate: time to create everything through the API server;
- sync: `serve` start to ready (lists every kind, builds the first state);
- churn: per EndpointSlice update, the delay from the API write returning to the
  push that carries it (istiod-py's /debug/push_status), the share of pushes
  that were EDS-only, and istiod-py's CPU and RSS.

    python -m benchmarks.kube_churn --services 1000 --pods 5 --rate 20 --seconds 20

Pods are data (10.x addresses, no kubelet); the EndpointSlices point at them by
targetRef, so the registry joins each endpoint with its Pod (labels, account).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from istiod_py.kube.client import KubeClient

ROOT = Path(__file__).resolve().parent.parent
NS = "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def up(run_dir: Path) -> Path:
    env = {**os.environ, "KUBE_KCM": "0"}  # no controllers: the benchmark writes the slices itself
    out = subprocess.run(
        [str(ROOT / "scripts/kube/up.sh"), str(run_dir)], capture_output=True, text=True, env=env, check=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


def ip(i: int, j: int) -> str:
    n = i * 16 + j
    return f"10.{100 + n // 65536}.{(n // 256) % 256}.{n % 256}"


def populate(c: KubeClient, services: int, pods: int, workers: int = 16) -> float:
    t0 = time.monotonic()
    c.create("/api/v1/namespaces", {"metadata": {"name": NS}})
    c.create(f"/api/v1/namespaces/{NS}/serviceaccounts", {"metadata": {"name": "default"}})

    def one(i: int) -> None:
        name = f"svc-{i}"
        c.create(
            f"/api/v1/namespaces/{NS}/services",
            {"metadata": {"name": name}, "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80}]}},
        )
        for j in range(pods):
            c.create(
                f"/api/v1/namespaces/{NS}/pods",
                {
                    "metadata": {"name": f"{name}-{j}", "labels": {"app": name, "version": f"v{j % 2}"}},
                    "spec": {"containers": [{"name": "app", "image": "app:1"}], "automountServiceAccountToken": False},
                },
            )
        c.create(f"/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices", slice_body(i, pods, ready=True))

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(services)))
    return time.monotonic() - t0


def slice_body(i: int, pods: int, ready: bool, flip: int = -1) -> dict[str, Any]:
    name = f"svc-{i}"
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"{name}-1", "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": [
            {
                "addresses": [ip(i, j)],
                "conditions": {"ready": ready if j != flip else not ready},
                "targetRef": {"kind": "Pod", "name": f"{name}-{j}", "namespace": NS},
            }
            for j in range(pods)
        ],
    }


def push_status(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/debug/push_status", timeout=5) as r:
        return dict(json.loads(r.read()))


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))] if xs else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--pods", type=int, default=5, help="Pods (endpoints) per Service")
    ap.add_argument("--rate", type=float, default=20.0, help="EndpointSlice updates per second")
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args(argv)
    run_dir = Path(tempfile.mkdtemp(prefix="istiod-py-kube-bench-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        kubeconfig = up(run_dir)
        c = KubeClient.from_kubeconfig(str(kubeconfig))
        populate_s = populate(c, args.services, args.pods)
        debug = free_port()
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "istiod_py.cli", "serve", "--kubeconfig", str(kubeconfig),
                "--xds-port", str(free_port()), "--debug-port", str(debug), "--no-ca", "--log-level", "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(run_dir / "istiod.log", "wb"),  # noqa: SIM115 - lives as long as the process
        )  # fmt: skip
        while True:
            try:
                if push_status(debug)["services"] >= args.services:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() - t0 > 300:
                raise SystemExit(f"istiod-py did not become ready: {(run_dir / 'istiod.log').read_text()[-2000:]}")
            time.sleep(0.05)
        sync_s = time.monotonic() - t0
        ps = psutil.Process(proc.pid)
        cpu0 = sum(ps.cpu_times()[:2])
        seen: dict[int, dict[str, Any]] = {}
        writes: list[tuple[float, str]] = []
        interval = 1.0 / args.rate
        start = time.time()
        k = 0
        while time.time() - start < args.seconds:
            i = k % args.services
            body = slice_body(i, args.pods, ready=True, flip=k % args.pods if (k // args.services) % 2 == 0 else -1)
            path = f"/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices/svc-{i}-1"
            body["metadata"]["resourceVersion"] = c.get(path)["metadata"]["resourceVersion"]
            c.replace(path, body)
            writes.append((time.time(), f"svc-{i}.{NS}.svc.cluster.local"))
            for p in push_status(debug)["recent_pushes"]:
                seen.setdefault(int(p["version"]), p)
            k += 1
            time.sleep(max(0.0, start + k * interval - time.time()))
        deadline = time.time() + 10
        while time.time() < deadline:
            for p in push_status(debug)["recent_pushes"]:
                seen.setdefault(int(p["version"]), p)
            if seen and max(p["at"] for p in seen.values()) >= writes[-1][0]:
                break
            time.sleep(0.05)
        cpu = sum(ps.cpu_times()[:2]) - cpu0
        rss = ps.memory_info().rss / 2**20
        pushes = sorted(seen.values(), key=lambda p: p["at"])
        lat = []
        for at, host in writes:
            hit = next((p for p in pushes if p["at"] >= at and host in p["eds_hosts"]), None)
            if hit is not None:
                lat.append(hit["at"] - at)
        churn = [p for p in pushes if p["at"] >= start]
        eds_only = sum(1 for p in churn if not p["full"])
        rows = [
            ("services / pods", f"{args.services} / {args.services * args.pods}"),
            ("populate through the API server", f"{populate_s:.1f} s"),
            ("serve start -> ready (list + first state)", f"{sync_s:.2f} s"),
            ("slice updates (rate)", f"{len(writes)} ({len(writes) / args.seconds:.1f}/s)"),
            ("updates seen in a push", f"{len(lat)}/{len(writes)}"),
            ("API write -> push p50 / p90 / max", f"{pct(lat, 50) * 1000:.0f} / {pct(lat, 90) * 1000:.0f} / "
             f"{(max(lat) if lat else float('nan')) * 1000:.0f} ms"),
            ("pushes during churn, EDS-only", f"{len(churn)}, {eds_only}"),
            ("istiod-py CPU during churn", f"{cpu:.1f} s ({100 * cpu / args.seconds:.0f}% of a core)"),
            ("istiod-py RSS", f"{rss:.0f} MiB"),
        ]  # fmt: skip
        width = max(len(r[0]) for r in rows)
        for name, value in rows:
            print(f"{name:<{width}}  {value}")
        if lat:
            print(f"(mean {statistics.mean(lat) * 1000:.0f} ms)")
        return 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(10)
        subprocess.run([str(ROOT / "scripts/kube/down.sh"), str(run_dir)], check=False)
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
