"""No stream cancelled by the server in a connect storm (issue 18).

A reconnect storm delivers more new streams than gRPC core's default pending-call
limit (1,000) while the server's event loop is busy; with the default channel
arguments the core cancelled the oldest waiting calls (2,000 simulated proxies:
520-692 CANCELLED per storm, each client reconnecting). This reproduces a
storm against a real grpc.aio server built with the xDS server's channel
arguments: 1,500 streams open while the server's loop is blocked, and every one
must then be served, none cancelled."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from istiod_py.server import grpc_server_options

METHOD = "/test.Storm/Stream"
STREAMS = 1_500


def _handler() -> grpc.GenericRpcHandler:
    async def stream(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        async for raw in requests:
            yield raw  # echo the first request, like a first xDS response
            return

    def identity(b: bytes) -> bytes:
        return b

    return grpc.method_handlers_generic_handler(
        "test.Storm",
        {"Stream": grpc.stream_stream_rpc_method_handler(stream, identity, identity)},
    )


def _storm(port: int, started: threading.Event, out: Counter[str]) -> None:
    """Clients on their own thread and loop: open every stream at once."""

    async def one(channel: grpc.aio.Channel) -> None:
        call = channel.stream_stream(METHOD, request_serializer=None, response_deserializer=None)()
        try:
            await call.write(b"hello")
            async for _ in call:
                break
            out["served"] += 1
        except grpc.aio.AioRpcError as e:
            out[e.code().name] += 1
        finally:
            call.cancel()

    async def main() -> None:
        # Many connections, as many proxies would open (one stream each would
        # cost a socket per stream; 100 streams per connection is enough here).
        channels = [
            grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(STREAMS // 100)
        ]
        for ch in channels:
            await ch.channel_ready()
        tasks = [asyncio.create_task(one(channels[i % len(channels)])) for i in range(STREAMS)]
        await asyncio.sleep(0.5)
        started.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
        for ch in channels:
            await ch.close()

    asyncio.run(main())


async def _run(options: list[tuple[str, Any]]) -> Counter[str]:
    server = grpc.aio.server(options=options)
    server.add_generic_rpc_handlers((_handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    out: Counter[str] = Counter()
    started = threading.Event()
    clients = threading.Thread(target=_storm, args=(port, started, out), daemon=True)
    clients.start()
    try:
        while not started.is_set():
            await asyncio.sleep(0.01)
        # The server's loop is busy (a storm's translation and first responses):
        # the streams wait in gRPC core, not yet taken by the application.
        time.sleep(1.5)
        while clients.is_alive():
            await asyncio.sleep(0.05)
    finally:
        await server.stop(None)
    return out


@pytest.mark.timeout(180)
def test_connect_storm_streams_wait_rather_than_being_cancelled() -> None:
    out = asyncio.run(_run(grpc_server_options()))
    assert out == Counter({"served": STREAMS}), out
