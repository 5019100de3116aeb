"""The push cap: at most `limit` holders, waiters served in arrival order, a
cancelled waiter neither loses nor leaks a slot."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from istiod_py.xds.server import PushSlots

pytestmark = pytest.mark.timeout(10)


async def test_cap_order_and_gauge() -> None:
    reg = CollectorRegistry()
    slots = PushSlots(2, Gauge("inflight", "test", registry=reg))
    release = asyncio.Event()
    order: list[int] = []

    async def worker(i: int) -> None:
        async with slots:
            order.append(i)
            await release.wait()

    tasks = [asyncio.create_task(worker(i)) for i in range(6)]
    await asyncio.sleep(0.05)
    assert slots.inflight == 2 and order == [0, 1] and slots.locked()
    assert b"inflight 2.0" in generate_latest(reg)
    release.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4, 5]
    assert slots.inflight == 0 and slots.peak == 2 and not slots.locked()


async def test_cancelled_waiters_do_not_leak_slots() -> None:
    slots = PushSlots(1)
    hold = asyncio.Event()

    async def holder() -> None:
        async with slots:
            await hold.wait()

    async def waiter(got: list[int], i: int) -> None:
        async with slots:
            got.append(i)

    h = asyncio.create_task(holder())
    await asyncio.sleep(0.01)
    got: list[int] = []
    w1 = asyncio.create_task(waiter(got, 1))
    w2 = asyncio.create_task(waiter(got, 2))
    await asyncio.sleep(0.01)
    w1.cancel()  # cancelled while waiting: skipped
    hold.set()
    await h
    await asyncio.gather(w1, w2, return_exceptions=True)
    assert got == [2] and slots.inflight == 0
    # a slot handed to a waiter that is cancelled before it runs is passed on
    async with slots:
        w3 = asyncio.create_task(waiter(got, 3))
        w4 = asyncio.create_task(waiter(got, 4))
        await asyncio.sleep(0.01)
    w3.cancel()
    await asyncio.gather(w3, w4, return_exceptions=True)
    assert got == [2, 4] and slots.inflight == 0
