"""New streams' first translations are made in batches (xds/first_batch.py):
proxies that connect within the window are translated back to back, once each;
answers already in the memo do not wait; a batch yields to the event loop every
`max_batch` proxies; a failure is left to the stream's own request."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from istiod_py.cache.resources import Resources, resources_of
from istiod_py.model import MeshState, Proxy, parse_proxy
from istiod_py.xds.first_batch import FirstBatch
from istiod_py.xds.server import XdsServer
from istiod_py.xds.stream import StreamError
from istiod_py.xds.types import TypeUrl


def _proxy(i: int) -> Proxy:
    return parse_proxy(f"sidecar~10.0.{i // 250}.{i % 250}~p{i}.ns~ns.svc.cluster.local", {})


def _server(window_s: float, fail: set[int] | None = None) -> tuple[XdsServer, Counter[tuple[int, str]], MeshState]:
    calls: Counter[tuple[int, str]] = Counter()
    state = MeshState(1, {}, {}, {})

    def generate(st: MeshState, proxy: Proxy, type_url: str) -> Resources:
        calls[(id(proxy), type_url)] += 1
        if fail and id(proxy) in fail:
            raise ValueError("broken")
        return resources_of()

    return XdsServer(generate, lambda: state, first_batch_s=window_s), calls, state


async def test_streams_connecting_together_are_translated_in_one_batch() -> None:
    xds, calls, state = _server(0.01)
    proxies = [_proxy(i) for i in range(20)]
    await asyncio.gather(*(xds.first_translation(state, p, TypeUrl.CLUSTER) for p in proxies))
    assert xds.first_batch.batches == 1 and xds.first_batch.largest == 20
    # each proxy's four types translated once, in the batch; the requests then hit the memo
    for p in proxies:
        for t in (TypeUrl.CLUSTER, TypeUrl.ENDPOINT, TypeUrl.LISTENER, TypeUrl.ROUTE):
            xds.generate(state, p, t)
            assert calls[(id(p), t)] == 1


async def test_a_translation_in_the_memo_does_not_wait() -> None:
    xds, _calls, state = _server(10.0)  # a batch would take 10 s
    p = _proxy(1)
    xds.generate(state, p, TypeUrl.CLUSTER)
    await asyncio.wait_for(xds.first_translation(state, p, TypeUrl.CLUSTER), 1.0)
    assert xds.first_batch.batches == 0


async def test_window_zero_and_secrets_translate_one_at_a_time() -> None:
    xds, _calls, state = _server(0.0)
    await asyncio.wait_for(xds.first_translation(state, _proxy(1), TypeUrl.CLUSTER), 1.0)
    xds2, _calls2, state2 = _server(10.0)
    await asyncio.wait_for(xds2.first_translation(state2, _proxy(1), TypeUrl.SECRET), 1.0)
    assert xds.first_batch.batches == 0 and xds2.first_batch.batches == 0


async def test_a_large_batch_lets_the_loop_run_between_chunks() -> None:
    order: list[str] = []
    loop = asyncio.get_running_loop()

    def translate(st: MeshState, p: Proxy, t: str) -> None:
        if not order:  # work that arrives while the first chunk runs (a read, an ACK)
            loop.call_soon(order.append, "loop")
        order.append("t")

    fb = FirstBatch(translate, 0.001, max_batch=4)
    state = MeshState(1, {}, {}, {})
    await asyncio.gather(*(fb.wait(state, _proxy(i), TypeUrl.CLUSTER) for i in range(10)))
    assert order == ["t"] * 4 + ["loop"] + ["t"] * 6
    assert fb.batches == 3 and fb.largest == 4


async def test_a_failed_translation_is_reported_by_the_streams_own_request() -> None:
    p = _proxy(1)
    xds, _calls, state = _server(0.001, fail={id(p)})
    await xds.first_translation(state, p, TypeUrl.CLUSTER)  # does not raise
    with pytest.raises(StreamError, match="broken"):
        xds.generate(state, p, TypeUrl.CLUSTER)


async def test_a_stream_that_went_away_is_skipped() -> None:
    xds, calls, state = _server(0.01)
    gone, stays = _proxy(1), _proxy(2)
    waiter = asyncio.ensure_future(xds.first_translation(state, gone, TypeUrl.CLUSTER))
    await asyncio.sleep(0)
    waiter.cancel()
    await xds.first_translation(state, stays, TypeUrl.CLUSTER)
    assert calls[(id(gone), TypeUrl.CLUSTER)] == 0 and calls[(id(stays), TypeUrl.CLUSTER)] == 1
