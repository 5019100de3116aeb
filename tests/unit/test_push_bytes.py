"""The byte budget over all streams' writes (xds/slots.py ByteBudget): the bytes
being written at once never exceed it, whatever the count gates let through.

Counted, not timed: the budget's own books (bytes held, peak, sends waiting)
and which streams are blocked in a write, with real gRPC clients that stop
reading (GatedClient: a 64 KiB window, so a ~130 KB CDS response blocks the
server's write until the client reads)."""

from __future__ import annotations

import asyncio
import tracemalloc
from pathlib import Path

import pytest

from istiod_py.xds.slots import ByteBudget
from tests.unit.test_push_behaviour import GatedClient, control_plane, until
from tests.unit.xds_client import CDS, SotwClient, cluster, make_node, names_of

pytestmark = pytest.mark.timeout(30)

SLOW = 10  # clients that stop reading


# --- the gate alone ---------------------------------------------------------------


async def test_budget_admits_in_order_while_the_bytes_fit_and_a_large_send_alone() -> None:
    b = ByteBudget(100)
    await b.acquire(60)
    await b.acquire(40)  # exactly full
    order: list[str] = []

    async def send(tag: str, n: int) -> None:
        await b.acquire(n)
        order.append(tag)

    big = asyncio.create_task(send("big", 500))  # larger than the whole budget
    small = asyncio.create_task(send("small", 10))  # fits only after big: waits behind it
    await asyncio.sleep(0)
    assert order == [] and b.inflight == 100 and b.waited == 2
    b.release(60)
    await asyncio.sleep(0)
    assert order == []  # 10 would fit, but "big" is first in line
    b.release(40)
    await asyncio.sleep(0)
    assert order == ["big"] and b.inflight == 500  # alone: nothing else in flight
    b.release(500)
    await asyncio.gather(big, small)
    assert order == ["big", "small"] and b.inflight == 10 and b.peak == 500
    b.release(10)
    assert b.inflight == 0 and b.sends == 0


async def test_a_cancelled_waiter_gives_way_and_holds_nothing() -> None:
    b = ByteBudget(100)
    await b.acquire(90)
    blocked = asyncio.create_task(b.acquire(50))
    behind = asyncio.create_task(b.acquire(10))  # fits now, but waits behind `blocked`
    await asyncio.sleep(0)
    assert not behind.done()
    blocked.cancel()
    await asyncio.sleep(0)
    await asyncio.wait_for(behind, 1)
    assert b.inflight == 100 and b.sends == 2
    b.release(90)
    b.release(10)
    assert b.inflight == 0 and not b._waiters


# --- real streams -------------------------------------------------------------------


async def test_bytes_in_flight_stay_within_the_budget_while_slow_streams_connect(tmp_path: Path) -> None:
    async with control_plane(tmp_path, big=True, max_concurrent_initial=50) as mesh:
        xds = mesh.cp.xds
        assert xds is not None
        # The size of the CDS response every proxy gets (shared bytes), from a reader.
        probe = await SotwClient(mesh.channel, make_node(ip="127.0.8.1", name="probe")).start()
        size = (await probe.subscribe(CDS)).ByteSize()
        await probe.close()
        assert size > 100_000  # larger than a non-reading client's 64 KiB window
        # Room for two such responses: the count gate (50) would let all ten write.
        budget = xds.send_bytes
        budget.limit = int(2.5 * size)
        budget.peak = 0
        clients: list[GatedClient] = []
        for i in range(SLOW):
            c = GatedClient(mesh, make_node(ip=f"127.0.9.{i}", name=f"slow{i}"))
            await c.start()
            await c.send(CDS)
            clients.append(c)
        await until(lambda: len(xds.streams) == SLOW, what="streams registered")
        await until(lambda: xds.initial_slots.inflight == SLOW, what="every first response past the count gate")

        def writing() -> int:
            return sum(1 for s in xds.streams.values() if s.writing_since)

        await until(lambda: writing() == 2, what="two writes blocked on flow control")
        await asyncio.sleep(0.2)  # nothing else gets in while they are blocked
        assert writing() == 2
        assert budget.sends == 2 and budget.inflight == 2 * size <= budget.limit < 3 * size
        assert len(budget._waiters) == SLOW - 2
        # The clients read one after another: each freed write lets the next one in,
        # and the bytes held never pass the budget.
        for c in clients:
            c.allow()
            cds = await c.recv_type(CDS, timeout=5)
            assert cluster("bulk399") in names_of(cds)
            assert budget.inflight <= budget.limit
        await until(lambda: budget.inflight == 0 and budget.sends == 0, what="every write to finish")
        assert budget.peak <= budget.limit
        assert budget.peak >= 2 * size  # the budget was used, not bypassed
        assert budget.waited >= SLOW - 2
        for c in clients:
            await c.close()


async def test_streams_share_one_response_object_no_python_copy_per_stream(tmp_path: Path) -> None:
    """The bytes a push writes to N streams are one Python object: gRPC core
    makes its own copy per stream (outside Python's heap, bounded by the
    budget), so the Python heap must not grow with N while N writes block."""
    async with control_plane(tmp_path, big=True, max_concurrent_initial=50) as mesh:
        xds = mesh.cp.xds
        assert xds is not None
        probe = await SotwClient(mesh.channel, make_node(ip="127.0.8.2", name="probe")).start()
        size = (await probe.subscribe(CDS)).ByteSize()
        await probe.close()
        xds.send_bytes.limit = 100 * size  # no byte limit here: all ten write at once
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            clients: list[GatedClient] = []
            for i in range(SLOW):
                c = GatedClient(mesh, make_node(ip=f"127.0.10.{i}", name=f"slow{i}"))
                await c.start()
                await c.send(CDS)
                clients.append(c)
            await until(lambda: sum(1 for s in xds.streams.values() if s.writing_since) == SLOW, what="ten writes")
            during, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert xds.send_bytes.inflight == SLOW * size
        # Ten per-stream copies would be 10 x ~130 KB; the streams' own state and
        # the clients (in this process) are far less than that.
        assert during - before < SLOW * size / 2, (during - before, size)
        for c in clients:
            c.allow()
            await c.recv_type(CDS, timeout=5)
            await c.close()
