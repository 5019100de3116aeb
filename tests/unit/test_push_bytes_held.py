"""What a stream keeps while it waits (the memory that is not the byte budget's):
at 5,000 services x 2,000 proxies each stream's EDS subscription (5,000 names)
was its own list and set (~1 GB in all), and a stream waiting for the
initial-response gate held its raw and parsed request (another ~1 GB in a
connect storm). Counted by identity and by what the waiting tasks reference,
not timed."""

from __future__ import annotations

import asyncio
import gc
import inspect
import tracemalloc
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from envoy.service.discovery.v3 import discovery_pb2

from istiod_py.xds.stream import Stream
from tests.unit.test_push_behaviour import GatedClient, control_plane, until
from tests.unit.xds_client import CDS, EDS, SotwClient, cluster, make_node

pytestmark = pytest.mark.timeout(30)

NAMES = [cluster(f"bulk{i}") for i in range(400)]


async def test_streams_with_one_subscription_share_its_names(tmp_path: Path) -> None:
    async with control_plane(tmp_path, big=True) as mesh:
        xds = mesh.cp.xds
        assert xds is not None
        clients = []
        for i in range(3):
            c = await SotwClient(mesh.channel, make_node(ip=f"127.0.11.{i}", name=f"same{i}")).start()
            r = await c.subscribe(CDS)
            await c.ack(r)
            r = await c.subscribe(EDS, NAMES)
            await c.ack(r, NAMES)  # the ACK repeats the names: still the shared objects
            clients.append(c)
        await until(lambda: all(s.info and EDS in s.info.watches for s in xds.streams.values()), what="EDS watches")
        watches = [s.info.watches[EDS] for s in xds.streams.values() if s.info is not None]
        assert len(watches) == 3 and watches[0].names == set(NAMES)
        assert all(w.names is watches[0].names for w in watches)  # one set, not three
        lasts = [s._last_names[EDS] for s in xds.streams.values()]  # type: ignore[attr-defined]
        assert all(x is lasts[0] for x in lasts)
        for c in clients:
            await c.close()


def _chain(aw: Any) -> list[FrameType]:
    """The frames of a suspended await chain, from `aw` inwards."""
    frames = []
    while aw is not None:
        frame = getattr(aw, "cr_frame", None) or getattr(aw, "ag_frame", None)
        if frame is not None:
            frames.append(frame)
        aw = getattr(aw, "cr_await", None) or getattr(aw, "ag_await", None)
    return frames


def _held_by(frames: list[FrameType]) -> list[str]:
    """Requests (raw bytes over 1 KB, or parsed) referenced by these frames."""
    out: list[str] = []
    for frame in frames:
        for name, v in frame.f_locals.items():
            if isinstance(v, bytes) and len(v) > 1024:
                out.append(f"{frame.f_code.co_name}:{name} ({len(v)} bytes)")
            elif isinstance(v, discovery_pb2.DiscoveryRequest):
                out.append(f"{frame.f_code.co_name}:{name} (parsed request)")
    return out


def _stream_frames(stream: Stream) -> list[FrameType]:
    """The frames of `stream`'s own task from Stream.run inwards (gRPC's handler
    above it is compiled code, which hides the chain from Task.get_stack)."""
    runs = [
        o
        for o in gc.get_objects()
        if inspect.iscoroutine(o)
        and o.cr_frame is not None
        and o.cr_frame.f_locals.get("self") is stream
        and o.cr_code.co_name == "run"
    ]
    assert len(runs) == 1
    frames = _chain(runs[0])
    assert [f.f_code.co_name for f in frames][:2] == ["run", "_loop"]
    return frames


async def test_a_stream_waiting_for_the_initial_gate_holds_no_request(tmp_path: Path) -> None:
    async with control_plane(tmp_path, big=True, max_concurrent_initial=1) as mesh:
        xds = mesh.cp.xds
        assert xds is not None
        # One slow client takes the only initial slot: its CDS write blocks (64 KiB window).
        slow = GatedClient(mesh, make_node(ip="127.0.12.1", name="slow"))
        await slow.start()
        await slow.send(CDS)
        await until(lambda: xds.initial_slots.inflight == 1 and len(xds.streams) == 1, what="the slot taken")
        # Others ask for 400 EDS clusters by name (a ~20 KB request) and wait for the gate.
        waiting = []
        for i in range(3):
            c = await SotwClient(mesh.channel, make_node(ip=f"127.0.12.{10 + i}", name=f"wait{i}")).start()
            await c.send(EDS, NAMES)
            waiting.append(c)
        await until(lambda: len(xds.initial_slots._waiters) == 3, what="three streams waiting for the gate")
        streams = [s for s in xds.streams.values() if s.info is not None and s.info.proxy.id.startswith("wait")]
        assert len(streams) == 3
        for s in streams:
            assert s._first_sends == [] and s.info is not None and EDS in s.info.watches  # decided, owed
            assert _held_by(_stream_frames(s)) == [], _held_by(_stream_frames(s))
        # Nor do the streams' readers (tasks of their own) hold the last request read.
        # A reader handles a request itself when its stream's task is idle, so the
        # slow stream's reader is the one writing its CDS response: that response
        # (the `data` of the write in progress) is all it may hold.
        readers = [t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "Stream._reader"]
        assert len(readers) == 4
        slow_stream = next(s for s in xds.streams.values() if s.info is not None and s.info.proxy.id.startswith("slow"))
        assert slow_stream.writing_since > 0
        for t in readers:
            frames = _chain(t.get_coro())
            writing = t.get_coro().cr_frame.f_locals.get("self") is slow_stream
            held = _held_by(frames)
            if writing:
                held = [h for h in held if not h.startswith(("send:data ", "write:data "))]
                assert "write" in [f.f_code.co_name for f in frames]  # the write in progress
            assert held == []
        slow.allow()
        for c in waiting:
            r = await c.recv_type(EDS, timeout=5)
            assert set(_names_of_eds(r)) == set(NAMES)
            await c.close()
        await slow.close()


def _names_of_eds(r: discovery_pb2.DiscoveryResponse) -> list[str]:
    from envoy.config.endpoint.v3 import endpoint_pb2

    out = []
    for a in r.resources:
        cla = endpoint_pb2.ClusterLoadAssignment()
        a.Unpack(cla)
        out.append(cla.cluster_name)
    return out


async def test_no_stream_keeps_its_last_request_once_handled(tmp_path: Path) -> None:
    """gRPC's request iterator keeps its last message while awaiting the next;
    the reader does not use it (stream.py _reader), so once handled an ACK naming
    400 clusters (~20 KB, ~240 KB at 5,000 services) is freed on every stream."""
    async with control_plane(tmp_path, big=True) as mesh:
        xds = mesh.cp.xds
        assert xds is not None
        clients = []
        for i in range(5):
            c = await SotwClient(mesh.channel, make_node(ip=f"127.0.13.{i}", name=f"ack{i}")).start()
            clients.append(c)
        ack_size = 0
        tracemalloc.start()
        try:
            for c in clients:
                r = await c.subscribe(EDS, NAMES)
                await c.ack(r, NAMES)
                req = discovery_pb2.DiscoveryRequest(
                    type_url=EDS, resource_names=NAMES, version_info=r.version_info, response_nonce=r.nonce
                )
                ack_size = req.ByteSize()
            await until(
                lambda: all(s.info and s.info.watches[EDS].acks == 1 for s in xds.streams.values()), what="ACKs"
            )
            gc.collect()
            snap = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        # A bytes object of n bytes is one block of n + its header (< 64 bytes).
        kept = [t for t in snap.traces if ack_size <= t.size < ack_size + 64]
        assert ack_size > 10_000
        assert len(kept) <= 1, [str(t.traceback) for t in kept]  # none per stream (5 before)
        for c in clients:
            await c.close()
