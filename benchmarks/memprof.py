"""Where the server's memory goes: `istiod-py serve` run under tracemalloc with
a sampler thread, as `benchmarks.run --memprof PATH` starts it.

    python -m benchmarks.memprof PATH serve --config-dir ... (the serve arguments)

Every half second the sampler records the process RSS, the Python heap as
tracemalloc sees it, and the byte budget's bytes and sends in flight (slots.py);
each time RSS grows 25 % past the last snapshot it takes a tracemalloc snapshot.
PATH.timeline.csv gets the samples, PATH.top.txt the top allocation sites of
the snapshot at the highest RSS (rewritten after each snapshot, so a killed
server leaves its last one). RSS minus the traced heap is what Python does not
see: gRPC core's message copies and socket buffers, malloc's retained free
memory, thread stacks and the interpreter itself."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

from istiod_py.xds import server as xds_server
from istiod_py.xds import slots

_BUDGETS: list[slots.ByteBudget] = []
_orig_init = slots.ByteBudget.__init__


def _tracking_init(self: slots.ByteBudget, *a: Any, **kw: Any) -> None:
    _orig_init(self, *a, **kw)
    _BUDGETS.append(self)


_SERVERS: list[Any] = []
_orig_server_init = xds_server.XdsServer.__init__


def _tracking_server_init(self: Any, *a: Any, **kw: Any) -> None:
    _orig_server_init(self, *a, **kw)
    _SERVERS.append(self)


def _streams() -> tuple[int, int, float, int, int]:
    """(streams writing, streams with a push pending, MB of requests read but not
    handled, streams running, streams waiting for the initial-response gate)."""
    writing = pending = queued = running = waiting = 0
    for srv in _SERVERS:
        waiting += len(srv.initial_slots._waiters)
        for _ in range(5):  # read from this thread while the loop runs: retry a torn read
            try:
                live = list(srv.live)
                break
            except RuntimeError:
                live = []
        running += len(live)
        for st in live:
            writing += bool(st.writing_since)
            pending += st.pending is not None
            with contextlib.suppress(RuntimeError):
                queued += sum(len(e) for e in list(st.events._queue) if isinstance(e, bytes))
    return writing, pending, queued / 2**20, running, waiting


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _gate_bytes() -> tuple[int, int, int]:
    """(bytes being written, their peak, sends being written) from the byte budget."""
    return (
        sum(g.inflight for g in _BUDGETS),
        sum(g.peak for g in _BUDGETS),
        sum(g.sends for g in _BUDGETS),
    )


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (f, ctypes.c_size_t)
        for f in [
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        ]
    ]


def _malloc() -> tuple[float, float]:
    """glibc's view, MB: (in use: allocated chunks and mmapped blocks; free but
    kept by malloc, not returned to the OS). (0, 0) without glibc's mallinfo2."""
    fn = getattr(_LIBC, "mallinfo2", None)
    if fn is None:
        return 0.0, 0.0
    fn.restype = _Mallinfo2
    m = fn()
    return (m.uordblks + m.hblkhd) / 2**20, m.fordblks / 2**20


_LIBC = ctypes.CDLL(None)


def _write_top(path: Path, snap: tracemalloc.Snapshot, rss: float, at: float) -> None:
    stats = snap.statistics("lineno")
    total = sum(s.size for s in stats)
    lines = [
        f"snapshot at t={at:.1f}s: RSS {rss:.0f} MB, traced {total / 2**20:.1f} MB, "
        f"untraced (RSS - traced) {rss - total / 2**20:.0f} MB",
        "",
    ]
    for s in stats[:40]:
        fr = s.traceback[0]
        lines.append(f"{s.size / 2**20:9.2f} MB {s.count:9d} blocks  {fr.filename}:{fr.lineno}")
    path.write_text("\n".join(lines) + "\n")


def _sampler(out: Path, stop: threading.Event) -> None:
    t0 = time.monotonic()
    snap_rss = 150.0
    best = 0.0
    snaps = 0
    keep = os.environ.get("MEMPROF_KEEP") == "1"
    trace = tracemalloc.is_tracing()
    with open(f"{out}.timeline.csv", "w") as tl:
        tl.write(
            "t_s,rss_mb,traced_mb,traced_peak_mb,gate_bytes_mb,gate_bytes_peak_mb,gate_sends,malloc_inuse_mb,malloc_free_mb,writing,pending,queued_req_mb,streams,initial_waiting\n"
        )
        while not stop.wait(0.5):
            rss = _rss_mb()
            cur, peak = tracemalloc.get_traced_memory()
            gb, gp, gn = _gate_bytes()
            mu, mf = _malloc()
            sw, sp, sq, sr, si = _streams()
            now = time.monotonic() - t0
            tl.write(
                f"{now:.1f},{rss:.0f},{cur / 2**20:.1f},{peak / 2**20:.1f},"
                f"{gb / 2**20:.1f},{gp / 2**20:.1f},{gn},{mu:.0f},{mf:.0f},{sw},{sp},{sq:.1f},{sr},{si}\n"
            )
            tl.flush()
            if trace and rss > snap_rss * 1.25:
                snap_rss = rss
                snap = tracemalloc.take_snapshot()
                snaps += 1
                if keep:  # MEMPROF_KEEP=1: every snapshot to PATH.N.snap, for Snapshot.compare_to
                    snap.dump(f"{out}.{snaps}.snap")
                if rss > best:
                    best = rss
                    _write_top(Path(f"{out}.top.txt"), snap, rss, now)
                del snap


def main() -> int:
    out = Path(sys.argv[1])
    argv = sys.argv[2:]
    slots.ByteBudget.__init__ = _tracking_init  # type: ignore[method-assign]
    xds_server.XdsServer.__init__ = _tracking_server_init  # type: ignore[method-assign]
    if os.environ.get("MEMPROF_TRACE", "1") != "0":  # MEMPROF_TRACE=0: samples only, full speed
        tracemalloc.start(1)
    stop = threading.Event()
    th = threading.Thread(target=_sampler, args=(out, stop), daemon=True, name="memprof")
    th.start()
    from istiod_py.cli.app import main as cli_main

    try:
        return cli_main(argv)
    finally:
        stop.set()
        th.join(timeout=5)


if __name__ == "__main__":
    sys.exit(main())
