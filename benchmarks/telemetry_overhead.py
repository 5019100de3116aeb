"""What telemetry costs per request: latency p50/p99 and proxy CPU through two real
sidecars (client sidecar -> server sidecar -> echo app), with telemetry off,
request metrics on (Istio's default), and metrics + access logs + 100 % traces.

    python -m benchmarks.telemetry_overhead --requests 2000

Traces go to a real Jaeger (scripts/build_jaeger.sh); access logs to a file.
Requests are sequential on one kept-alive connection to the client sidecar, so the
numbers are per-hop costs, not throughput. Prints a table (and --json).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.support.client_server import ClientServer
from tests.support.configs import docs, zipkin
from tests.support.envoy import envoy_factory_context
from tests.support.jaeger import Jaeger
from tests.support.mesh import Mesh
from tests.support.net import allocate_ip
from tests.support.upstreams import HttpSession

ALL_ON = """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging: [{providers: [{name: envoy}]}]
  tracing: [{providers: [{name: zipkin}], randomSamplingPercentage: 100}]
"""
MODES = {
    "off": {"defaultProviders": {"metrics": []}},
    "metrics": {},
    "metrics+logs+traces": {},
}


class FastApp:
    """A keep-alive HTTP/1.1 server answering every request with one write: the
    test echo server writes headers and body separately, and Nagle plus delayed
    ACKs then add ~40 ms per request, which would hide what telemetry costs."""

    BODY = b'{"ok": true}'
    RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n" + BODY

    def __init__(self) -> None:
        self.host = allocate_ip()
        self.sock = socket.create_server((self.host, 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:
                    _, buf = buf.split(b"\r\n\r\n", 1)
                    conn.sendall(self.RESPONSE)

    def stop(self) -> None:
        self.sock.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_mode(mode: str, requests: int, workdir: Path, jaeger: Jaeger) -> dict[str, Any]:
    mesh_config: dict[str, Any] = dict(MODES[mode])
    mesh_config["extensionProviders"] = [
        {"name": "zipkin", "zipkin": {"service": "zipkin.istio-system.svc.cluster.local", "port": 9411}},
        {"name": "envoy", "envoyFileAccessLog": {"path": str(workdir / "access.log")}},
    ]
    with envoy_factory_context(workdir / "envoy") as envoys:
        app = FastApp()
        mesh = Mesh(workdir, envoys, mesh_config=mesh_config)
        # the server's own Sidecar sees ./* (no egress listener); the client also sees istio-system/* (zipkin)
        pair = ClientServer(
            f"{app.host}:{app.port}",
            server_labels={"version": "v1"},
            entry="server-1",
            client_hosts='["./*", "istio-system/*"]',
            server_egress_listener=False,
        )
        cfg = docs(pair.config(), zipkin(jaeger.host, jaeger.zipkin_port))
        mesh.write("mesh.yaml", cfg + ("---\n" + ALL_ON if mode == "metrics+logs+traces" else ""))
        try:
            mesh.start()
            server, client = pair.start(mesh)
            session = HttpSession(pair.client_bind, 9080)
            mesh.wait(lambda: session.request("/", host="server:9080").status == 200, 10, "traffic")
            for _ in range(200):  # warm up
                session.request("/", host="server:9080")
            pids = [p.pid for p in (client, server) if p.pid]
            cpu0 = sum(cpu_seconds(p) for p in pids)
            lat = []
            t0 = time.perf_counter()
            for _ in range(requests):
                s = time.perf_counter()
                r = session.request("/", host="server:9080")
                lat.append((time.perf_counter() - s) * 1000)
                assert r.status == 200
            wall = time.perf_counter() - t0
            cpu = sum(cpu_seconds(p) for p in pids) - cpu0
            lat.sort()
            return {
                "mode": mode,
                "requests": requests,
                "p50_ms": round(statistics.median(lat), 3),
                "p99_ms": round(lat[int(0.99 * len(lat)) - 1], 3),
                "proxy_cpu_us_per_request": round(cpu / requests * 1e6, 1),
                "rps": round(requests / wall, 1),
            }
        finally:
            mesh.stop()
            app.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        jaeger = Jaeger(Path(tmp) / "jaeger").start()
        try:
            for mode in MODES:
                rows.append(run_mode(mode, args.requests, Path(tmp) / mode.replace("+", "_"), jaeger))
        finally:
            jaeger.stop()
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{'mode':<22}{'p50 ms':>9}{'p99 ms':>9}{'proxy CPU us/req':>18}{'req/s':>9}")
    for r in rows:
        print(f"{r['mode']:<22}{r['p50_ms']:>9}{r['p99_ms']:>9}{r['proxy_cpu_us_per_request']:>18}{r['rps']:>9}")


if __name__ == "__main__":
    main()
