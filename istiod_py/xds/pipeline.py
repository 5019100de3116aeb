"""Debounce source events into MeshStates and push requests.

Events within a quiet period are merged; a steady stream of events still pushes
after the maximum delay. Each push carries what changed, so an endpoint-only
change pushes only EDS for the hosts concerned.

Endpoint-only changes have a maximum delay of their own (`eds_max_delay`,
0.3 s by default): under steady endpoint churn the quiet period never comes,
and holding endpoints back for the full maximum delay (10 s; what istiod does
with EDS debouncing on) is the "slow endpoint updates" its users complain of.
A push of EDS for a few clusters is cheap, and pushes that overlap merge per
connection, so the rate of pushes stays bounded by the time one takes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from istiod_py.model import MeshState
from istiod_py.registry.aggregate import Aggregator, SourceSnapshot, diff

from .connection import PushRequest

log = logging.getLogger("istiod_py.push")


class PushPipeline:
    def __init__(
        self,
        aggregator: Aggregator,
        push: Callable[[PushRequest], None],
        *,
        quiet: float = 0.1,
        max_delay: float = 10.0,
        eds_max_delay: float = 0.3,
    ) -> None:
        self.aggregator = aggregator
        self._push = push
        self.quiet = quiet
        self.max_delay = max_delay
        self.eds_max_delay = eds_max_delay
        # The pending events include a config change: no early endpoint push.
        self._full_pending = False
        self.state: MeshState = aggregator.build()
        self._first: float | None = None
        self._last = 0.0
        self._task: asyncio.Task[None] | None = None
        self.history: list[dict[str, object]] = []  # recent pushes, for /debug/push_status
        self.idle = asyncio.Event()
        self.idle.set()

    def current(self) -> MeshState:
        return self.state

    def source_changed(self, name: str, snap: SourceSnapshot) -> None:
        self.aggregator.set_source(name, snap)
        now = time.monotonic()
        if self._first is None:
            self._first = now
        self._last = now
        self.idle.clear()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._debounce())

    async def stop(self) -> None:
        """Stop debouncing: a change still waiting for its quiet period is dropped
        (the next start loads the sources afresh)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._first = None
        self.idle.set()

    def rebuild_now(self) -> None:
        """Synchronously apply pending source changes (start-up, tests)."""
        self._apply(time.monotonic())

    async def _debounce(self) -> None:
        try:
            while self._first is not None:
                now = time.monotonic()
                wait_quiet = self.quiet - (now - self._last)
                wait_max = self.max_delay - (now - self._first)
                if wait_quiet <= 0 or wait_max <= 0:
                    self._apply(self._first)
                    continue
                wait_eds = self.eds_max_delay - (now - self._first)
                if not self._full_pending and wait_eds <= 0:
                    if self._apply(self._first, eds_only=True):
                        continue
                    self._full_pending = True  # a config change: wait for quiet or the maximum
                waits = [wait_quiet, wait_max] + ([wait_eds] if not self._full_pending and wait_eds > 0 else [])
                await asyncio.sleep(min(waits))
        except Exception:
            self._first = None
            log.exception("building a new mesh state failed; keeping the previous one")
        finally:
            if self._first is None:
                self.idle.set()

    def _apply(self, start: float | None, *, eds_only: bool = False) -> bool:
        """Build the state from the sources and push what changed. With eds_only,
        nothing happens (False) unless the change is endpoint-only."""
        start = start if start is not None else time.monotonic()
        new = self.aggregator.build()
        change = classify(self.state, new)
        if eds_only and change.full:
            return False
        self._first = None
        self._full_pending = False
        if not change.full and not change.eds_hosts:
            return True  # nothing a proxy could see changed
        self.state = new
        req = PushRequest(new, change.full, change.eds_hosts, change.reason, change.addresses, start)
        self.history.append(
            {
                "version": new.version,
                "full": change.full,
                "eds_hosts": sorted(change.eds_hosts)[:50],
                "reason": change.reason,
                "at": time.time(),
                "debounce_s": round(time.monotonic() - start, 4),
            }
        )
        del self.history[:-50]
        log.info("push v%d (%s%s)", new.version, "full" if change.full else "eds", f": {change.reason}")
        self._push(req)
        return True


# What a new state changes (kept under this name for callers of the pipeline).
classify = diff
