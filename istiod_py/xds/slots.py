"""The push gate: caps on concurrent sends (pushes to connected streams, first
responses to new streams), so a push wave or a reconnect storm queues instead of
serializing and buffering thousands of responses at once."""

from __future__ import annotations

import asyncio
import collections
from typing import Any


class PushSlots:
    """A cap on concurrent sends of one kind (pushes, or first responses to new
    streams), as an `async with` gate: first come, first served, and O(1) per
    entry and exit however many wait (asyncio.Semaphore scans and removes from
    its waiter deque, O(waiters), which with 2,000 streams behind a cap of 100
    cost more than the pushes themselves). A freed slot is handed straight to
    the next waiter. The in-flight count is exported as a gauge read at scrape
    time; the highest count seen is kept for debugging and tests."""

    def __init__(self, limit: int, gauge: Any = None) -> None:
        if limit < 1:
            raise ValueError(f"a concurrency cap must be at least 1, not {limit}")
        self.limit = limit
        self.inflight = 0
        self.peak = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        if gauge is not None:
            gauge.set_function(lambda: self.inflight)

    async def __aenter__(self) -> PushSlots:
        if self.inflight < self.limit and not self._waiters:
            self.inflight += 1
            self.peak = max(self.peak, self.inflight)
            return self
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut  # __aexit__ of a holder hands its slot over (inflight unchanged)
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release()  # the slot arrived as we were cancelled: pass it on
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():  # cancelled waiters are skipped
                fut.set_result(None)
                return
        self.inflight -= 1

    def locked(self) -> bool:
        return self.inflight >= self.limit
