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


class ByteBudget:
    """A cap on the bytes of responses being written, summed over every stream.

    gRPC copies each message into its core when it is written (one copy per
    stream: 20 writes of one 8 MB bytes object are 160 MB in core), and
    `await context.write()` returns once HTTP/2 flow control let the last of it
    onto the socket (tests/unit/test_push_bytes.py shows it), when the copy is
    dropped. So holding `len(data)` from before the write until it returns
    bounds what core holds for sends, whatever the count gates (PushSlots) let
    through: with 5,000 services, 100 concurrent sends of a 5.5 MB CDS response
    to slow readers are 550 MB in core.

    First come, first served: a send waits while the ones ahead of it wait.
    One response larger than the whole budget is let through alone (when
    nothing else is in flight), so no response size can wedge the gate."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a byte budget must be at least 1 byte, not {limit}")
        self.limit = limit
        self.inflight = 0  # bytes held by sends being written
        self.peak = 0  # the most ever held at once (tests, debugging)
        self.sends = 0  # sends holding bytes now
        self.waited = 0  # sends that had to wait for room (ever)
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    def _fits(self, n: int) -> bool:
        return self.inflight == 0 or self.inflight + n <= self.limit

    def _take(self, n: int) -> None:
        self.inflight += n
        self.sends += 1
        self.peak = max(self.peak, self.inflight)

    def try_acquire(self, n: int) -> bool:
        """Hold `n` bytes if they fit now with nobody waiting ahead; False otherwise
        (then acquire() waits in line)."""
        if not self._waiters and self._fits(n):
            self._take(n)
            return True
        return False

    async def acquire(self, n: int) -> None:
        """Wait until `n` more bytes fit in the budget, and hold them."""
        if not self._waiters and self._fits(n):
            self._take(n)
            return
        self.waited += 1
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((n, fut))
        try:
            await fut  # release() takes the bytes for us before waking us
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(n)  # granted as we were cancelled: give it back
            else:
                self._wake()  # a cancelled head may have blocked smaller ones behind it
            raise

    def release(self, n: int) -> None:
        self.inflight -= n
        self.sends -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            n, fut = self._waiters[0]
            if fut.done():  # cancelled while waiting
                self._waiters.popleft()
                continue
            if not self._fits(n):
                return
            self._waiters.popleft()
            self._take(n)
            fut.set_result(None)
