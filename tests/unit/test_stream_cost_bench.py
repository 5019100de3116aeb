"""benchmarks/stream_cost.py runs to the end with a few streams: it once hung
for good (its fake gRPC context lacked the read() the stream's reader moved to),
and a benchmark nobody can run measures nothing."""

from __future__ import annotations

import argparse
import asyncio

import grpc
import pytest

from benchmarks import stream_cost


def test_stream_cost_runs_every_phase() -> None:
    args = argparse.Namespace(streams=5, names=3, rounds=2, changed_hosts=5)
    out = asyncio.run(asyncio.wait_for(stream_cost.main_async(args), 60))
    assert set(out) == {"connect", "eds0", "eds1", "disconnect", "reconnect"}
    # Each phase did work (a phase that waited on nothing would measure ~0).
    assert all(v > 0 for v in out.values()), out


def test_stream_cost_fails_instead_of_hanging(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream that ends during its connect is reported at once, not waited for."""

    async def eof(self: stream_cost.FakeContext) -> object:
        return grpc.aio.EOF

    monkeypatch.setattr(stream_cost.FakeContext, "read", eof)
    args = argparse.Namespace(streams=2, names=1, rounds=0, changed_hosts=2)
    with pytest.raises(RuntimeError, match="stream 0 ended during its connect"):
        asyncio.run(asyncio.wait_for(stream_cost.main_async(args), 10))
