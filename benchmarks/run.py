"""Convergence and scale benchmark for istiod-py, one command:

    python -m benchmarks.run --services 1000 --endpoints 3 --clients 1000 \
        --transport both --scenarios full,eds --envoys 5 --repeats 5

For each transport: generate the mesh into a temp dir, start `istiod-py serve`
on it, start the simulated ADS clients (benchmarks/loadgen.py, separate
processes) and optionally real Envoys, wait until every client has its initial
config, then per scenario apply a change at t0 and measure per client the time
until it ACKed the response that reflects it. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from benchmarks import meshgen

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def git_state() -> dict[str, Any]:
    """The tree measured: HEAD and the files modified on top of it."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        st = subprocess.run(["git", "status", "--short", "--", "istiod_py"], cwd=root, capture_output=True, text=True)
    except OSError:
        return {}
    return {"head": head.stdout.strip(), "modified": [x[3:] for x in st.stdout.splitlines()]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return str(r.read().decode())


def percentile(xs: list[float], p: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    k = max(0, min(len(s) - 1, round(p / 100 * len(s) + 0.5) - 1))
    return s[k]


_METRIC = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([0-9eE+\-.naNInf]+)$")


# The server's CPU seconds in the translator (istiod_py/xds/metrics.py).
GENERATE_CPU = "istiod_py_xds_generate_cpu_seconds"


def scrape(debug_port: int) -> dict[str, float]:
    """Sum of each metric over its labels."""
    out: dict[str, float] = {}
    try:
        text = http_get(f"http://127.0.0.1:{debug_port}/metrics")
    except OSError:
        return out
    for line in text.splitlines():
        m = _METRIC.match(line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
    return out


def vm_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# --- server ------------------------------------------------------------------


class Server:
    def __init__(
        self, config_dir: Path, args: argparse.Namespace, tag: str, ports: tuple[int, int] | None = None
    ) -> None:
        self.config_dir, self.args, self.tag = config_dir, args, tag
        self.xds_port, self.debug_port = ports or (free_port(), free_port())
        # --cprofile: the server runs under cProfile (written when it exits; the
        # `profile_top`-free way to see a whole run's CPU when py-spy is absent).
        prof = ["-m", "cProfile", "-o", f"{args.cprofile}.{tag}.{time.time():.0f}"] if args.cprofile else []
        # --memprof: under tracemalloc with an RSS/heap/gate sampler (benchmarks/memprof.py).
        main = ["-m", "benchmarks.memprof", f"{args.memprof}.{tag}"] if args.memprof else ["-m", "istiod_py.cli"]
        cmd = [
            sys.executable,
            *prof,
            *main,
            "serve",
            "--config-dir",
            str(config_dir),
            "--no-ca",
            "--xds-port",
            str(self.xds_port),
            "--debug-port",
            str(self.debug_port),
            "--log-level",
            "warning",
            *args.server_arg,
        ]
        self.log_path = Path(tempfile.gettempdir()) / f"istiod-py-bench-{tag}-{os.getpid()}.log"
        self.log = open(self.log_path, "a")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.ps = psutil.Process(self.proc.pid)
        self.spy: subprocess.Popen[bytes] | None = None

    def wait_ready(self, timeout: float = 120.0) -> float:
        t = time.monotonic()
        while time.monotonic() - t < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: see {self.log_path}:\n{self.log_path.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                http_get(f"http://127.0.0.1:{self.debug_port}/ready", 1)
                return time.monotonic() - t
            time.sleep(0.1)
        raise RuntimeError("server not ready")

    def cpu(self) -> float:
        c = self.ps.cpu_times()
        return float(c.user + c.system)

    def rss_mb(self) -> float:
        return float(self.ps.memory_info().rss / 2**20)

    def push_history(self) -> list[dict[str, Any]]:
        try:
            return list(json.loads(http_get(f"http://127.0.0.1:{self.debug_port}/debug/push_status"))["recent_pushes"])
        except (OSError, ValueError, KeyError):
            return []

    def start_profile(self, out: Path, rate: int, native: bool = False) -> None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.spy = subprocess.Popen(
            [
                spy,
                "record",
                # --threads: each stack starts with its thread, so the event loop's share can be read apart.
                *(["--native", "--threads"] if native else []),
                "--pid",
                str(self.proc.pid),
                "--format",
                "raw",
                "--rate",
                str(rate),
                # --native pauses the process per sample (py-spy refuses it with --nonblocking).
                *([] if native else ["--nonblocking"]),
                "-o",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop_profile(self) -> None:
        if self.spy is not None:
            self.spy.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.spy.wait(30)
            self.spy = None

    def stop(self) -> None:
        self.stop_profile()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def restarted(self) -> Server:
        """Stop this server and start a new one on the same ports and config dir."""
        self.stop()
        return Server(self.config_dir, self.args, self.tag, (self.xds_port, self.debug_port))


# --- loadgen processes -----------------------------------------------------------


class LoadgenProc:
    def __init__(self, proc: asyncio.subprocess.Process, index: int, count: int) -> None:
        self.proc = proc
        self.index = index
        self.count = count
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.errors: list[dict[str, Any]] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("event") == "client_error":
                self.errors.append(ev)
                continue
            await self.events.put(ev)

    def send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())

    async def expect(self, event: str, timeout: float, wid: str | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            ev = await asyncio.wait_for(self.events.get(), max(0.01, deadline - time.monotonic()))
            if ev.get("event") == event and (wid is None or ev.get("id") == wid):
                return ev


async def start_loadgens(args: argparse.Namespace, port: int, transport: str) -> list[LoadgenProc]:
    n = args.clients
    if n <= 0:
        return []
    procs = max(1, min(args.procs, n))
    out = []
    first = 0
    exe = [goloadgen_binary()] if args.loadgen == "go" else [sys.executable, "-m", "benchmarks.loadgen"]
    for p in range(procs):
        count = n // procs + (1 if p < n % procs else 0)
        proc = await asyncio.create_subprocess_exec(
            *exe,
            "--server",
            f"127.0.0.1:{port}",
            "--first",
            str(first),
            "--count",
            str(count),
            "--transport",
            transport,
            "--namespaces",
            str(args.namespaces),
            "--proc",
            str(p),
            "--streams-per-channel",
            str(args.streams_per_channel),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=str(Path(__file__).resolve().parent.parent),
            limit=256 * 2**20,  # churn results are one long JSON line
        )
        out.append(LoadgenProc(proc, p, count))
        first += count
    return out


GO_DIR = Path(__file__).resolve().parent / "goloadgen"


def goloadgen_binary() -> str:
    """Build benchmarks/goloadgen into its git-ignored bin/ (go build caches)."""
    out = GO_DIR / "bin" / "goloadgen"
    subprocess.run(["go", "build", "-o", str(out), "."], cwd=GO_DIR, check=True)
    return str(out)


# --- real Envoys -------------------------------------------------------------------


class Envoy:
    def __init__(
        self, i: int, xds_port: int, transport: str, namespaces: int, workdir: Path, spec_cluster: str
    ) -> None:
        self.i = i
        self.admin_port = free_port()
        ns = f"ns-{i % namespaces}"
        self.boot = workdir / f"envoy-{i}.yaml"
        cmd = [
            sys.executable,
            "-m",
            "istiod_py.cli",
            "bootstrap",
            "--name",
            f"envoy-{i}",
            "--namespace",
            ns,
            "--ip",
            f"127.0.99.{i + 1}",
            "--interception-mode",
            "NONE",
            "--labels",
            f"app=envoy-{i}",
            "--discovery-address",
            f"127.0.0.1:{xds_port}",
            "--admin-port",
            str(self.admin_port),
            "-o",
            str(self.boot),
        ]
        if transport == "delta":
            cmd.append("--delta")
        subprocess.run(cmd, check=True)
        self._limit_stats(spec_cluster)
        self.log_path = workdir / f"envoy-{i}.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["envoy", "-c", str(self.boot), "--use-dynamic-base-id", "--concurrency", "1", "-l", "warning"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.ps = psutil.Process(self.proc.pid)

    def _limit_stats(self, cluster: str) -> None:
        """Keep only the stats the benchmark polls: with ~1000 clusters Envoy has
        ~100k stats and a filtered /stats walks them all, which on a 2-core box
        steals CPU from the server being measured. Config handling is unchanged."""
        import yaml

        doc = yaml.safe_load(self.boot.read_text())
        # a StringMatcher regex must match the whole name
        keep = [
            READY_STATS,
            ".*" + RDS_RELOAD,
            "cluster\\." + re.escape(cluster) + "\\.membership_change",
            ".*update_rejected",
        ]
        doc.setdefault("stats_config", {})["stats_matcher"] = {
            "inclusion_list": {"patterns": [{"safe_regex": {"regex": r}} for r in keep]}
        }
        self.boot.write_text(yaml.safe_dump(doc, sort_keys=False))

    def stats(self, pattern: str) -> dict[str, int]:
        q = urllib.parse.quote(pattern)
        text = http_get(f"http://127.0.0.1:{self.admin_port}/stats?usedonly&filter={q}", 2)
        out = {}
        for line in text.splitlines():
            k, _, v = line.partition(": ")
            with contextlib.suppress(ValueError):
                out[k] = int(v)
        return out

    def counter(self, pattern: str) -> int:
        try:
            return sum(self.stats(pattern).values())
        except OSError:
            return -1

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


RDS_RELOAD = r"rds\.8080\.config_reload$"
READY_STATS = (
    r"^(cluster_manager\.cds\.update_success|listener_manager\.lds\.update_success"
    r"|listener_manager\.total_listeners_active)$"
)


def eds_stat(spec: meshgen.MeshSpec) -> str:
    return "^cluster\\." + re.escape(meshgen.changed_cluster(spec)) + "\\.membership_change$"


async def envoys_ready(envoys: list[Envoy], timeout: float) -> float:
    t = time.monotonic()
    pending = set(range(len(envoys)))
    while pending and time.monotonic() - t < timeout:
        for i in list(pending):
            try:
                st = await asyncio.to_thread(envoys[i].stats, READY_STATS)
                rds = await asyncio.to_thread(envoys[i].counter, RDS_RELOAD)
            except OSError:
                continue
            if (
                st.get("cluster_manager.cds.update_success", 0) > 0
                and st.get("listener_manager.lds.update_success", 0) > 0
                and rds > 0
            ):
                pending.discard(i)
        await asyncio.sleep(0.2)
    if pending:
        raise RuntimeError(f"envoys {sorted(pending)} not ready; see their logs in {envoys[0].log_path.parent}")
    return time.monotonic() - t


async def envoy_counter(session: Any, e: Envoy, pattern: str) -> int:
    """Sum of the Envoy stats matching `pattern` (aiohttp: one event loop polls
    every Envoy concurrently, no thread per poll)."""
    import aiohttp

    try:
        async with session.get(
            f"http://127.0.0.1:{e.admin_port}/stats",
            params={"usedonly": "", "filter": pattern},
            timeout=aiohttp.ClientTimeout(total=2),
        ) as r:
            text = await r.text()
    except (aiohttp.ClientError, TimeoutError, OSError):
        return -1
    total = 0
    for line in text.splitlines():
        _, _, v = line.partition(": ")
        with contextlib.suppress(ValueError):
            total += int(v)
    return total


async def envoy_counters(envoys: list[Envoy], pattern: str) -> list[int]:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        return list(await asyncio.gather(*(envoy_counter(session, e, pattern) for e in envoys)))


ENVOY_REJECTED = r"update_rejected$"


def envoys_cpu(envoys: list[Envoy]) -> float:
    total = 0.0
    for e in envoys:
        with contextlib.suppress(psutil.Error):
            c = e.ps.cpu_times()
            total += c.user + c.system
    return total


async def watch_envoys(
    envoys: list[Envoy], pattern: str, base: list[int], timeout: float, poll: float = 0.05
) -> list[float | None]:
    """Poll each Envoy's counter until it passes its baseline; the time it was
    seen (so Envoy latencies are late by up to `poll`; polling faster costs
    Envoy and driver CPU that the 2-core box takes from the server)."""
    import aiohttp

    out: list[float | None] = [None] * len(envoys)
    if not envoys:
        return out

    async def one(session: Any, i: int) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = await envoy_counter(session, envoys[i], pattern)
            if v > base[i]:
                out[i] = time.monotonic()
                return
            await asyncio.sleep(poll)

    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as session:
        await asyncio.gather(*(one(session, i) for i in range(len(envoys))))
    return out


# --- scenarios -----------------------------------------------------------------------


@dataclass
class Sample:
    scenario: str
    rep: int
    latencies: list[float] = field(default_factory=list)
    missing: int = 0
    envoy_latencies: list[float] = field(default_factory=list)
    envoy_missing: int = 0
    detect_s: float | None = None
    server_cpu_s: float = 0.0
    translate_cpu_s: float = 0.0  # of server_cpu_s: the event loop in the translator
    loadgen_cpu_s: float = 0.0
    bytes_sent: float = 0.0
    nacks: float = 0.0
    wall_s: float = 0.0
    machine_busy: float = 0.0  # share of all CPUs busy during the run (0..1)
    envoy_nacks: int = 0  # increase of update_rejected over all Envoys
    extra: dict[str, Any] = field(default_factory=dict)


async def run_scenario(
    name: str,
    rep: int,
    generation: int,
    spec: meshgen.MeshSpec,
    root: Path,
    server: Server,
    lgs: list[LoadgenProc],
    envoys: list[Envoy],
    args: argparse.Namespace,
) -> Sample:
    if name == "full":
        marker, type_short = meshgen.full_marker(generation), "RDS"
        env_pattern = RDS_RELOAD
    else:
        marker, type_short = meshgen.eds_marker(generation), "EDS"
        env_pattern = eds_stat(spec)
    wid = f"{name}-{rep}"
    for lg in lgs:
        lg.send({"cmd": "arm", "id": wid, "type": type_short, "marker": marker.hex()})
    armed = [await lg.expect("armed", 30, wid) for lg in lgs]
    lg_cpu0 = sum(a["cpu"] for a in armed)
    env_base = await envoy_counters(envoys, env_pattern)
    env_rej0 = await envoy_counters(envoys, ENVOY_REJECTED)
    m0 = scrape(server.debug_port)
    cpu0 = server.cpu()
    sys0 = psutil.cpu_times()
    me = psutil.Process()
    drv0 = sum(me.cpu_times()[:2])
    env_cpu0 = envoys_cpu(envoys)
    t0, t0_wall = time.monotonic(), time.time()
    if name == "full":
        meshgen.apply_full_push(spec, root, generation)
    else:
        meshgen.apply_endpoint_change(spec, root, generation)
    env_task = asyncio.create_task(watch_envoys(envoys, env_pattern, env_base, args.timeout, args.envoy_poll))
    results = []
    for lg in lgs:
        remaining = max(0.1, args.timeout - (time.monotonic() - t0))
        try:
            results.append(await lg.expect("result", remaining, wid))
        except TimeoutError:
            lg.send({"cmd": "collect", "id": wid})
            results.append(await lg.expect("result", 30, wid))
    env_times = await env_task
    wall = time.monotonic() - t0
    env_rej1 = await envoy_counters(envoys, ENVOY_REJECTED)
    if envoys:
        # where the 2 cores went: the Envoys applying the change, the driver polling them
        s_extra = {"envoys_cpu_s": envoys_cpu(envoys) - env_cpu0, "driver_cpu_s": sum(me.cpu_times()[:2]) - drv0}
    else:
        s_extra = {}
    cpu1 = server.cpu()
    sys1 = psutil.cpu_times()
    await asyncio.sleep(0.3)  # let the last ACKs reach the server before scraping
    m1 = scrape(server.debug_port)
    s = Sample(name, rep)
    for r in results:
        for t in r["times"]:
            if t is None:
                s.missing += 1
            else:
                s.latencies.append(t - t0)
    for t in env_times:
        if t is None:
            s.envoy_missing += 1
        else:
            s.envoy_latencies.append(t - t0)
    s.loadgen_cpu_s = sum(r["cpu"] for r in results) - lg_cpu0
    s.server_cpu_s = cpu1 - cpu0
    s.bytes_sent = m1.get("pilot_xds_send_bytes", 0) - m0.get("pilot_xds_send_bytes", 0)
    s.translate_cpu_s = m1.get(GENERATE_CPU, 0) - m0.get(GENERATE_CPU, 0)
    s.nacks = m1.get("pilot_total_xds_rejects", 0) - m0.get("pilot_total_xds_rejects", 0)
    s.wall_s = wall
    s.extra = s_extra
    s.envoy_nacks = sum(b - a for a, b in zip(env_rej0, env_rej1, strict=True) if a >= 0 and b >= 0)
    total = sum(sys1) - sum(sys0)
    s.machine_busy = 1 - ((sys1.idle + sys1.iowait) - (sys0.idle + sys0.iowait)) / total if total > 0 else 0
    pushes = [p for p in server.push_history() if float(p.get("at", 0)) >= t0_wall]
    if pushes:
        s.detect_s = float(pushes[0]["at"]) - t0_wall
    return s


async def run_churn(
    rep: int, spec: meshgen.MeshSpec, root: Path, server: Server, lgs: list[LoadgenProc], args: argparse.Namespace
) -> Sample:
    """Steady endpoint churn: args.churn_rate endpoint changes per second for
    args.churn_duration seconds, rotating over 10 services of ns-0. Per change
    and client: t0 of the change until the client ACKed an EDS response holding
    that change or a newer one (the server may coalesce changes)."""
    wid = f"churn-{rep}"
    for lg in lgs:
        lg.send({"cmd": "arm_churn", "id": wid, "prefix": meshgen.CHURN_PREFIX.hex()})
    armed = [await lg.expect("armed", 30, wid) for lg in lgs]
    lg_cpu0 = sum(a["cpu"] for a in armed)
    m0 = scrape(server.debug_port)
    cpu0 = server.cpu()
    sys0 = psutil.cpu_times()
    n = max(1, round(args.churn_rate * args.churn_duration))
    start_wall = time.time()
    changed: dict[int, int] = {}
    t0s: list[float] = []
    start = time.monotonic()
    cpu_mid: list[tuple[float, float]] = []
    for g in range(1, n + 1):
        due = start + (g - 1) / args.churn_rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t0s.append(time.monotonic())
        meshgen.apply_churn(spec, root, changed, g)
        if g % max(1, round(args.churn_rate)) == 0:
            cpu_mid.append((time.monotonic(), server.cpu()))
    t_last = time.monotonic()
    cpu_last = server.cpu()
    for lg in lgs:
        lg.send({"cmd": "churn_target", "id": wid, "gen": n})
    results = []
    for lg in lgs:
        remaining = max(0.1, args.timeout - (time.monotonic() - t_last))
        try:
            results.append(await lg.expect("churn_result", remaining, wid))
        except TimeoutError:
            lg.send({"cmd": "collect_churn", "id": wid})
            results.append(await lg.expect("churn_result", 30, wid))
    t_end = time.monotonic()
    cpu1 = server.cpu()
    sys1 = psutil.cpu_times()
    await asyncio.sleep(0.3)
    m1 = scrape(server.debug_port)
    s = Sample("churn", rep)
    import bisect

    for r in results:
        for seen in r["seen"]:
            gens = [g for g, _ in seen]
            times = [t for _, t in seen]
            for g, t0 in enumerate(t0s, start=1):
                k = bisect.bisect_left(gens, g)
                if k == len(gens):
                    s.missing += 1
                else:
                    s.latencies.append(times[k] - t0)
    s.loadgen_cpu_s = sum(r["cpu"] for r in results) - lg_cpu0
    s.server_cpu_s = cpu1 - cpu0
    s.bytes_sent = m1.get("pilot_xds_send_bytes", 0) - m0.get("pilot_xds_send_bytes", 0)
    s.translate_cpu_s = m1.get(GENERATE_CPU, 0) - m0.get(GENERATE_CPU, 0)
    s.nacks = m1.get("pilot_total_xds_rejects", 0) - m0.get("pilot_total_xds_rejects", 0)
    s.wall_s = t_end - start
    total = sum(sys1) - sum(sys0)
    s.machine_busy = 1 - ((sys1.idle + sys1.iowait) - (sys0.idle + sys0.iowait)) / total if total > 0 else 0
    window = t_last - start
    per_s = [(c1 - c0) / (t1 - tt0) for (tt0, c0), (t1, c1) in zip([(start, cpu0), *cpu_mid], cpu_mid, strict=False)]
    s.extra = {
        "changes": n,
        "rate": args.churn_rate,
        "duration_s": window,
        "tail_s": t_end - t_last,
        # server CPU cores, averaged over the churn window (first to last change)
        "server_cores_avg": (cpu_last - cpu0) / window if window > 0 else None,
        "server_cores_max_1s": max(per_s) if per_s else None,
        # pushes the server decided during the run (its history may be capped)
        "pushes": len([p for p in server.push_history() if float(p.get("at", 0)) >= start_wall]),
    }
    return s


async def run_reconnect(
    kind: str, rep: int, server: Server, lgs: list[LoadgenProc], args: argparse.Namespace
) -> tuple[Sample, Server]:
    """Reconnect storm. kind "storm": every client closes its stream and TCP
    connection at once and reconnects; kind "restart": the server process is
    stopped and a new one started on the same ports and config dir, clients
    reconnect on their own. Latency per client: t0 until it holds a full ACKed
    config again (CDS, EDS, LDS, RDS)."""
    wid = f"{kind}-{rep}"
    sys0 = psutil.cpu_times()
    for lg in lgs:
        lg.send({"cmd": "stats"})
    lg_cpu0 = sum([(await lg.expect("stats", 30))["cpu"] for lg in lgs])
    m0 = scrape(server.debug_port) if kind == "storm" else {}
    cpu0 = server.cpu() if kind == "storm" else 0.0
    extra: dict[str, Any] = {}
    if kind == "storm":
        t0 = time.monotonic()
        for lg in lgs:
            lg.send({"cmd": "reconnect", "id": wid})
    else:
        for lg in lgs:
            lg.send({"cmd": "await_ready", "id": wid})
        t0 = time.monotonic()
        server.stop()
        extra["stop_s"] = time.monotonic() - t0
        server = Server(server.config_dir, server.args, server.tag, (server.xds_port, server.debug_port))
        extra["server_ready_s"] = server.wait_ready() + extra["stop_s"]
    s = Sample(kind, rep)
    for lg in lgs:
        remaining = max(0.1, args.timeout - (time.monotonic() - t0))
        try:
            ev = await lg.expect("ready", remaining, None)
            while ev.get("id") != wid:
                ev = await lg.expect("ready", remaining, None)
            s.latencies.extend(float(t) - t0 for t in ev.get("times") or [ev["last_ready"]])
        except TimeoutError:
            s.missing += lg.count
    t_end = time.monotonic()
    s.wall_s = t_end - t0
    s.server_cpu_s = server.cpu() - cpu0
    for lg in lgs:
        lg.send({"cmd": "stats"})
    st = [await lg.expect("stats", 30) for lg in lgs]
    s.loadgen_cpu_s = sum(x["cpu"] for x in st) - lg_cpu0
    extra["client_retries"] = sum(x.get("retries", 0) for x in st)
    m1 = scrape(server.debug_port)
    s.bytes_sent = m1.get("pilot_xds_send_bytes", 0) - m0.get("pilot_xds_send_bytes", 0)
    s.translate_cpu_s = m1.get(GENERATE_CPU, 0) - m0.get(GENERATE_CPU, 0)
    s.nacks = m1.get("pilot_total_xds_rejects", 0) - m0.get("pilot_total_xds_rejects", 0)
    sys1 = psutil.cpu_times()
    total = sum(sys1) - sum(sys0)
    s.machine_busy = 1 - ((sys1.idle + sys1.iowait) - (sys0.idle + sys0.iowait)) / total if total > 0 else 0
    s.extra = extra
    return s, server


def summarize(samples: list[Sample], key: str = "latencies") -> dict[str, Any]:
    xs = [x for s in samples for x in getattr(s, key)]
    detect = [s.detect_s for s in samples if s.detect_s is not None]
    # time from the server deciding the push (after file poll, reload, debounce, build)
    after = [x - s.detect_s for s in samples if s.detect_s is not None for x in getattr(s, key)]
    return {
        "n": len(xs),
        "missing": sum(s.missing if key == "latencies" else s.envoy_missing for s in samples),
        "p50": percentile(xs, 50),
        "p99": percentile(xs, 99),
        "max": max(xs) if xs else None,
        "detect_p50": statistics.median(detect) if detect else None,
        "detect_max": max(detect) if detect else None,
        "after_push_p50": percentile(after, 50),
        "after_push_p99": percentile(after, 99),
        "server_cpu_s": statistics.mean(s.server_cpu_s for s in samples) if samples else 0,
        "translate_cpu_s": statistics.mean(s.translate_cpu_s for s in samples) if samples else 0,
        "wall_s": statistics.mean(s.wall_s for s in samples) if samples else 0,
        "machine_busy": statistics.mean(s.machine_busy for s in samples) if samples else 0,
        "loadgen_cpu_s": statistics.mean(s.loadgen_cpu_s for s in samples) if samples else 0,
        "bytes_sent": statistics.mean(s.bytes_sent for s in samples) if samples else 0,
        "nacks": sum(s.nacks for s in samples),
        "envoy_nacks": sum(s.envoy_nacks for s in samples),
        "extra": [s.extra for s in samples if s.extra],
    }


async def run_transport(args: argparse.Namespace, transport: str, spec: meshgen.MeshSpec, ts: str) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"istiod-py-bench-{transport}-"))
    root = work / "config"
    meshgen.generate(spec, root)
    server = Server(root, args, transport)
    lgs: list[LoadgenProc] = []
    envoys: list[Envoy] = []
    rows: dict[str, Any] = {"transport": transport}
    try:
        rows["server_start_s"] = server.wait_ready()
        rows["rss_idle_mb"] = server.rss_mb()
        if args.profile_connect:
            prof = RESULTS_DIR / f"{ts}-{transport}-connect.pyspy.txt"
            server.start_profile(prof, args.profile_rate, args.profile_native)
            rows["profile_connect"] = str(prof)
        t = time.monotonic()
        gen0 = scrape(server.debug_port).get(GENERATE_CPU, 0)
        cpu0 = server.cpu()
        lgs = await start_loadgens(args, server.xds_port, transport)
        ready = []
        for lg in lgs:
            try:
                ready.append(await lg.expect("ready", args.connect_timeout))
            except TimeoutError:
                lg.send({"cmd": "stats"})
                st = await lg.expect("stats", 30)
                raise RuntimeError(f"loadgen {lg.index} not ready: {st} errors={lg.errors[:3]}") from None
        rows["initial_all_ready_s"] = max((r["last_ready"] for r in ready), default=t) - t
        rows["initial_server_cpu_s"] = server.cpu() - cpu0
        rows["initial_translate_cpu_s"] = scrape(server.debug_port).get(GENERATE_CPU, 0) - gen0
        rows["rss_connected_mb"] = server.rss_mb()
        print(
            f"[{transport}] {args.clients} clients ({args.loadgen} loadgen) have initial config after "
            f"{rows['initial_all_ready_s']:.2f}s "
            f"(server CPU {rows['initial_server_cpu_s']:.1f}s, of which translation "
            f"{rows['initial_translate_cpu_s']:.2f}s; RSS {rows['rss_connected_mb']:.0f} MB)",
            flush=True,
        )
        if args.envoys:
            envoys = [
                Envoy(i, server.xds_port, transport, spec.namespaces, work, meshgen.changed_cluster(spec))
                for i in range(args.envoys)
            ]
            rows["envoys_ready_s"] = await envoys_ready(envoys, args.connect_timeout)
            print(f"[{transport}] {len(envoys)} Envoys ready after {rows['envoys_ready_s']:.2f}s", flush=True)
        server.stop_profile()
        await asyncio.sleep(args.settle)
        if args.profile:
            prof = RESULTS_DIR / f"{ts}-{transport}.pyspy.txt"
            server.start_profile(prof, args.profile_rate, args.profile_native)
            rows["profile"] = str(prof)
            await asyncio.sleep(1.0)
        generation = 0
        samples: dict[str, list[Sample]] = {}
        peak_rss = 0.0
        for rep in range(args.repeats):
            for sc in args.scenarios:
                generation += 1
                if sc in ("full", "eds"):
                    s = await run_scenario(sc, rep, generation, spec, root, server, lgs, envoys, args)
                elif sc == "churn":
                    s = await run_churn(rep, spec, root, server, lgs, args)
                else:  # storm, restart
                    if sc == "restart":
                        server.stop_profile()
                        peak_rss = max(peak_rss, vm_hwm_mb(server.proc.pid) or 0)
                    s, server = await run_reconnect(sc, rep, server, lgs, args)
                samples.setdefault(sc, []).append(s)
                print(
                    f"[{transport}] {sc} rep {rep}: p50 {fmt_s(percentile(s.latencies, 50))} "
                    f"p99 {fmt_s(percentile(s.latencies, 99))} max {fmt_s(max(s.latencies, default=None))} "
                    f"missing {s.missing} detect {fmt_s(s.detect_s)} server CPU {s.server_cpu_s:.2f}s "
                    f"(translation {s.translate_cpu_s:.2f}s) "
                    f"in {s.wall_s:.2f}s wall, machine {100 * s.machine_busy:.0f}% busy, "
                    f"loadgen CPU {s.loadgen_cpu_s:.2f}s "
                    f"envoys max {fmt_s(max(s.envoy_latencies, default=None))} envoy NACKs {s.envoy_nacks}"
                    + (f" {json.dumps(s.extra)}" if s.extra else ""),
                    flush=True,
                )
                await asyncio.sleep(args.settle)
        server.stop_profile()
        rows["scenarios"] = {}
        for sc, ss in samples.items():
            rows["scenarios"][sc] = {
                "sim": summarize(ss),
                "envoy": summarize(ss, "envoy_latencies") if envoys else None,
                "samples": [s.__dict__ for s in ss],
            }
        rows["rss_end_mb"] = server.rss_mb()
        rows["rss_peak_mb"] = max(peak_rss, vm_hwm_mb(server.proc.pid) or 0)
        final = scrape(server.debug_port)
        rows["nacks_total"] = final.get("pilot_total_xds_rejects", 0)
        rows["client_errors"] = sum(len(lg.errors) for lg in lgs)
        for lg in lgs:
            lg.send({"cmd": "stats"})
        rows["loadgen_stats"] = [await lg.expect("stats", 30) for lg in lgs]
        return rows
    finally:
        for lg in lgs:
            with contextlib.suppress(Exception):
                lg.send({"cmd": "quit"})
        for lg in lgs:
            try:
                await asyncio.wait_for(lg.proc.wait(), 10)
            except TimeoutError:
                lg.proc.kill()
                await lg.proc.wait()
        for e in envoys:
            e.stop()
        server.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"[{transport}] kept {work} (server log {server.log_path})")


def fmt_s(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x * 1000:.0f}ms" if x < 1 else f"{x:.2f}s"


def table(result: dict[str, Any]) -> str:
    hdr = (
        "| transport | scenario | clients | samples | missing | p50 | p99 | max | detect p50 | "
        "after-push p50 | after-push p99 | "
        "server CPU s | server CPU ms/proxy | of which translation ms/proxy | "
        "loadgen CPU s | bytes sent | NACKs | peak RSS MB |"
    )
    lines = [hdr, "|" + "---|" * (hdr.count("|") - 1)]
    for tr in result["transports"]:
        for sc, d in tr.get("scenarios", {}).items():
            for kind in ("sim", "envoy"):
                s = d.get(kind)
                if not s:
                    continue
                clients = result["args"]["clients"] if kind == "sim" else result["args"]["envoys"]
                if not s["n"] and not s["missing"]:
                    continue  # no Envoys, or no simulated clients (--clients 0)
                nacks = f"{s['nacks']:.0f}" + (f" (envoy {s['envoy_nacks']})" if kind == "envoy" else "")
                lines.append(
                    f"| {tr['transport']} | {sc}{' (envoy)' if kind == 'envoy' else ''} | {clients} | {s['n']} | "
                    f"{s['missing']} | {fmt_s(s['p50'])} | {fmt_s(s['p99'])} | {fmt_s(s['max'])} | "
                    f"{fmt_s(s['detect_p50'])} | {fmt_s(s['after_push_p50'])} | {fmt_s(s['after_push_p99'])} | "
                    f"{s['server_cpu_s']:.2f} | {1000 * s['server_cpu_s'] / max(1, clients):.2f} | "
                    f"{1000 * s.get('translate_cpu_s', 0) / max(1, clients):.2f} | "
                    f"{s['loadgen_cpu_s']:.2f} | {s['bytes_sent'] / 1e6:.1f} MB | {nacks} | "
                    f"{tr.get('rss_peak_mb') or 0:.0f} |"
                )
    extra = []
    for tr in result["transports"]:
        extra.append(
            f"- {tr['transport']}: initial config to all {result['args']['clients']} clients in "
            f"{tr.get('initial_all_ready_s', 0):.2f}s (server CPU {tr.get('initial_server_cpu_s', 0):.1f}s, "
            f"{1000 * tr.get('initial_server_cpu_s', 0) / max(1, result['args']['clients']):.2f} ms per proxy, "
            f"of which translation "
            f"{1000 * tr.get('initial_translate_cpu_s', 0) / max(1, result['args']['clients']):.2f} ms); "
            f"RSS idle {tr.get('rss_idle_mb', 0):.0f} MB, connected {tr.get('rss_connected_mb', 0):.0f} MB, "
            f"peak {tr.get('rss_peak_mb') or 0:.0f} MB; client errors {tr.get('client_errors', 0)}"
        )
        for sc, d in tr.get("scenarios", {}).items():
            for x in d["sim"].get("extra", []):
                if sc == "churn":
                    extra.append(
                        f"- {tr['transport']} churn: {x['changes']} changes at {x['rate']}/s over "
                        f"{x['duration_s']:.1f}s; server CPU {x['server_cores_avg']:.2f} cores on average over "
                        f"the window (busiest 1 s: {x['server_cores_max_1s'] or 0:.2f}); tail to last client "
                        f"{x['tail_s']:.2f}s"
                    )
                elif sc in ("storm", "restart"):
                    extra.append(f"- {tr['transport']} {sc}: {json.dumps(x)}")
            xs = [x for x in d["sim"].get("extra", []) if "envoys_cpu_s" in x]
            if xs:
                extra.append(
                    f"- {tr['transport']} {sc}: per run, the {result['args']['envoys']} Envoys used "
                    f"{statistics.mean(x['envoys_cpu_s'] for x in xs):.2f} CPU s, the driver (polling them) "
                    f"{statistics.mean(x['driver_cpu_s'] for x in xs):.2f} CPU s"
                )
    return "\n".join([*lines, "", *extra])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--endpoints", type=int, default=3)
    ap.add_argument("--namespaces", type=int, default=10)
    ap.add_argument(
        "--hetero",
        action="store_true",
        help="heterogeneous mesh: a Sidecar per namespace, per-workload policy, HTTP and TCP ports (issue 18)",
    )
    ap.add_argument("--virtual-services", type=int, default=0, help="extra VirtualServices in the mesh")
    ap.add_argument(
        "--format",
        choices=["kube", "se"],
        default="kube",
        help="Service+EndpointSlice, or ServiceEntry (its endpoint edits are full pushes)",
    )
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--procs", type=int, default=4, help="loadgen processes")
    ap.add_argument("--streams-per-channel", type=int, default=1, help="ADS streams per gRPC connection")
    ap.add_argument("--transport", choices=["sotw", "delta", "both"], default="both")
    ap.add_argument(
        "--scenarios",
        default="full,eds",
        help="comma list of full, eds, churn (steady endpoint churn), storm (all clients reconnect at once), "
        "restart (server process restarted on the same config dir)",
    )
    ap.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra flag for istiod-py serve, repeatable (e.g. --server-arg=--debounce-max-eds=0.5)",
    )
    ap.add_argument("--churn-rate", type=float, default=20.0, help="endpoint changes per second (churn)")
    ap.add_argument("--churn-duration", type=float, default=60.0, help="seconds of churn")
    ap.add_argument(
        "--loadgen",
        choices=["py", "go"],
        default="py",
        help="simulated clients in Python (grpc.aio) or Go (benchmarks/goloadgen, built with go build)",
    )
    ap.add_argument(
        "--curve",
        action="store_true",
        help="scaling grid: every --curve-services x --curve-clients cell, --transport and --scenarios",
    )
    ap.add_argument("--curve-services", default="100,1000,5000")
    ap.add_argument("--curve-clients", default="100,1000,2000")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--envoys", type=int, default=0, help="real Envoys to run alongside (e.g. 5)")
    ap.add_argument("--envoy-poll", type=float, default=0.05, help="seconds between Envoy stats polls")
    ap.add_argument("--timeout", type=float, default=60.0, help="per scenario run")
    ap.add_argument("--connect-timeout", type=float, default=300.0)
    ap.add_argument("--settle", type=float, default=2.0, help="seconds of quiet between runs")
    ap.add_argument("--profile", action="store_true", help="py-spy the server during the scenarios")
    ap.add_argument("--profile-rate", type=int, default=100)
    ap.add_argument("--profile-native", action="store_true", help="py-spy --native: C frames (gRPC core, protobuf) too")
    ap.add_argument("--profile-connect", action="store_true", help="py-spy the server during the initial connect")
    ap.add_argument("--cprofile", default="", help="run the server under cProfile, output to PATH.<tag>.<time>")
    ap.add_argument(
        "--memprof", default="", help="run the server under tracemalloc, samples and top sites to PATH.<tag>.*"
    )
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (config, Envoy logs)")
    a = ap.parse_args(argv)
    a.scenarios = [s for s in a.scenarios.split(",") if s]
    for s in a.scenarios:
        if s not in ("full", "eds", "churn", "storm", "restart"):
            ap.error(f"unknown scenario {s!r}")
    a.curve_services = [int(x) for x in a.curve_services.split(",") if x]
    a.curve_clients = [int(x) for x in a.curve_clients.split(",") if x]
    return a


def curve_table(result: dict[str, Any]) -> str:
    hdr = (
        "| services | clients | transport | initial s | full p99 | eds p99 | full server CPU s | "
        "eds server CPU s | full bytes | peak RSS MB | loadgen CPU s (full) | note |"
    )
    lines = [hdr, "|" + "---|" * (hdr.count("|") - 1)]
    for cell in result["cells"]:
        for tr in cell.get("transports", []) or [{"transport": "-"}]:
            sc = tr.get("scenarios", {})
            full = (sc.get("full") or {}).get("sim") or {}
            eds = (sc.get("eds") or {}).get("sim") or {}

            def p99(d: dict[str, Any]) -> str:
                if not d:
                    return "-"
                return fmt_s(d.get("p99")) + (f" ({d['missing']} missing)" if d.get("missing") else "")

            lines.append(
                f"| {cell['services']} | {cell['clients']} | {tr['transport']} | "
                f"{tr.get('initial_all_ready_s', 0):.1f} | {p99(full)} | {p99(eds)} | "
                f"{full.get('server_cpu_s', 0):.2f} | {eds.get('server_cpu_s', 0):.2f} | "
                f"{full.get('bytes_sent', 0) / 1e6:.1f} MB | {tr.get('rss_peak_mb') or 0:.0f} | "
                f"{full.get('loadgen_cpu_s', 0):.2f} | {cell.get('error', '')} |"
            )
    return "\n".join(lines)


async def run_curve(args: argparse.Namespace, ts: str) -> dict[str, Any]:
    import copy

    result: dict[str, Any] = {
        "timestamp": ts,
        "command": " ".join(["python -m benchmarks.run", *sys.argv[1:]]),
        "args": vars(args),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "git": git_state(),
        "cells": [],
    }
    transports = ["sotw", "delta"] if args.transport == "both" else [args.transport]
    out = RESULTS_DIR / f"{ts}-curve.json"
    for n in args.curve_services:
        for c in args.curve_clients:
            a = copy.copy(args)
            a.services, a.clients = n, c
            spec = meshgen.MeshSpec(n, a.endpoints, a.namespaces, a.virtual_services, a.format, a.hetero)
            cell: dict[str, Any] = {"services": n, "clients": c, "transports": []}
            print(f"== curve cell: {n} services x {a.endpoints} endpoints, {c} clients", flush=True)
            try:
                for tr in transports:
                    cell["transports"].append(await run_transport(a, tr, spec, f"{ts}-{n}x{c}"))
            except Exception as e:  # a cell that does not converge is a result, not a crash
                cell["error"] = f"{type(e).__name__}: {str(e)[:200]}"
                print(f"   cell failed: {cell['error']}", flush=True)
            result["cells"].append(cell)
            out.write_text(json.dumps(result, indent=2, default=str))
    print()
    print(curve_table(result))
    print(f"\nJSON: {out}")
    return result


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    spec = meshgen.MeshSpec(
        args.services, args.endpoints, args.namespaces, args.virtual_services, args.format, args.hetero
    )
    ts = time.strftime("%Y%m%d-%H%M%S")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    if args.curve:
        return await run_curve(args, ts)
    transports = ["sotw", "delta"] if args.transport == "both" else [args.transport]
    result: dict[str, Any] = {
        "timestamp": ts,
        "command": " ".join(["python -m benchmarks.run", *sys.argv[1:]]),
        "args": vars(args),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "git": git_state(),
        "transports": [],
    }
    for tr in transports:
        result["transports"].append(await run_transport(args, tr, spec, ts))
    out = RESULTS_DIR / f"{ts}.json"
    out.write_text(json.dumps(result, indent=2, default=str))
    print()
    print(table(result))
    print(f"\nJSON: {out}")
    return result


def main(argv: list[str] | None = None) -> None:
    asyncio.run(amain(parse_args(argv)))


if __name__ == "__main__":
    main()
