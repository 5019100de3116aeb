"""A stream's event queue: the requests its reader hands over and the push,
close and recycle signals, taken by the stream's task in order.

Cheaper than asyncio.Queue (no unfinished-task Event, no putter/getter deques:
one consumer, producers never wait) and it can be *held*: while the reader
handles a request itself (the stream's task idle, nothing queued: see
Stream._reader), the task takes nothing, so protocol state still has one
writer at a time and events keep their order. Created per stream, so in a
reconnect storm its construction is per-connect CPU."""

from __future__ import annotations

import asyncio
import collections


class Mailbox:
    __slots__ = ("_held", "_items", "_loop", "_waiter")

    def __init__(self) -> None:
        self._items: collections.deque[object] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._held = False
        # Looked up once: on Python 3.11 asyncio.get_running_loop() is a getpid()
        # system call each time (it checks for a fork), ~4% of a connect storm's
        # event-loop CPU in all (gRPC's own calls included).
        self._loop: asyncio.AbstractEventLoop | None = None

    def put_nowait(self, item: object) -> None:
        self._items.append(item)
        if not self._held:
            self._wake()

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def idle(self) -> bool:
        """The consumer waits in get(), nothing is queued and nobody holds it:
        whoever holds it now is the only one acting on the stream."""
        w = self._waiter
        return w is not None and not w.done() and not self._items and not self._held

    def hold(self) -> None:
        """get() returns nothing until release()."""
        self._held = True

    def release(self) -> None:
        self._held = False
        if self._items:
            self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def get(self) -> object:
        while self._held or not self._items:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            w = self._waiter = loop.create_future()
            try:
                await w
            finally:
                self._waiter = None
        return self._items.popleft()
