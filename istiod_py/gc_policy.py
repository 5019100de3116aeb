"""Garbage collection that stays out of pushes.

With 2,000 proxies connected the server holds millions of tracked objects
(subscriptions, built resources, per-state translations). CPython's default
thresholds then run a full collection every few hundred thousand allocations,
and one took 0.26 s on the benchmark mesh: a quarter second of stop-the-world in
the middle of a push, at random. So:

- after start-up the heap built so far (modules, parsed config, the first
  translation) is frozen: full collections no longer walk it;
- young collections run less often (threshold 50,000 instead of 700) and a
  full collection is left to this module: it runs when the push pipeline is
  idle, once per interval, or after five intervals whatever the load, so
  cyclic garbage cannot pile up under steady churn.

Reference counting frees almost everything as before; only cycles wait for the
full collection."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger("istiod_py.gc")

THRESHOLDS = (50_000, 20, 1_000_000)


def configure() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)


class IdleCollector:
    """Runs a full collection every `interval` seconds when `idle()` says no
    push is in progress, and after `5 * interval` seconds in any case."""

    def __init__(self, idle: Callable[[], bool], interval: float = 60.0) -> None:
        self.idle = idle
        self.interval = interval
        self.last = time.monotonic()
        self.collections = 0
        self.pause_max = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def maybe_collect(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        since = now - self.last
        if since < self.interval or (not self.idle() and since < 5 * self.interval):
            return False
        t0 = time.perf_counter()
        gc.collect()
        pause = time.perf_counter() - t0
        self.pause_max = max(self.pause_max, pause)
        self.collections += 1
        self.last = time.monotonic()
        log.debug("full garbage collection: %.3fs", pause)
        return True

    async def _run(self) -> None:
        step = min(1.0, self.interval / 4)
        while True:
            await asyncio.sleep(step)
            try:
                self.maybe_collect()
            except Exception:  # pragma: no cover - never let this end the task
                log.exception("garbage collection failed")
