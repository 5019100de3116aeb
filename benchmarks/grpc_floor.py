"""The floor of grpc.aio's per-stream cost on this machine, for comparison with a push.

N bidirectional streams, each on its own channel, clients in 4 separate
processes. Each round the server writes a 500-byte message to every stream and
waits for one reply from each, the shape of an endpoint-only push and its ACK,
with no xDS logic at all. Prints the server's CPU per stream per round.

    python -m benchmarks.grpc_floor 1000
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import resource
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

ROUNDS = 5
PAYLOAD = b"y" * 500


def _ident(b: bytes) -> bytes:
    return b


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _server(n: int, port_q: Any, done_q: Any) -> None:
    streams: list[tuple[Any, asyncio.Queue[bytes]]] = []
    everyone = asyncio.Event()
    readers: list[asyncio.Task[None]] = []

    async def handler(requests: AsyncIterator[bytes], ctx: Any) -> None:
        q: asyncio.Queue[bytes] = asyncio.Queue()
        streams.append((ctx, q))
        if len(streams) == n:
            everyone.set()

        async def read() -> None:
            async for m in requests:
                q.put_nowait(m)

        readers.append(asyncio.create_task(read()))
        await ctx.write(b"x")
        await asyncio.Event().wait()

    server = grpc.aio.server(options=[("grpc.max_concurrent_streams", 100_000)])
    method = grpc.stream_stream_rpc_method_handler(handler, _ident, _ident)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("floor.Floor", {"S": method}),))
    port_q.put(server.add_insecure_port("127.0.0.1:0"))
    await server.start()
    await everyone.wait()
    for _, q in streams:
        await q.get()

    async def one(ctx: Any, q: asyncio.Queue[bytes]) -> None:
        await ctx.write(PAYLOAD)
        await q.get()

    for r in range(ROUNDS):
        c0, t0 = _cpu(), time.perf_counter()
        await asyncio.gather(*(one(c, q) for c, q in streams))
        cpu = _cpu() - c0
        print(f"round {r}: {n} streams, wall {time.perf_counter() - t0:.3f} s, server CPU {cpu:.3f} s, "
              f"{1e6 * cpu / n:.0f} us per stream", flush=True)  # fmt: skip
    done_q.put("done")


def _run_server(n: int, port_q: Any, done_q: Any) -> None:
    asyncio.run(_server(n, port_q, done_q))


async def _clients(port: int, n: int) -> None:
    async def one() -> None:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        call = channel.stream_stream("/floor.Floor/S", _ident, _ident)()
        await call.write(b"hi")
        async for _ in call:
            await call.write(b"ack")

    await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)


def _run_clients(port: int, n: int) -> None:
    asyncio.run(_clients(port, n))


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    port_q: Any = mp.Queue()
    done_q: Any = mp.Queue()
    server = mp.Process(target=_run_server, args=(n, port_q, done_q))
    server.start()
    port = port_q.get()
    clients = [mp.Process(target=_run_clients, args=(port, n // 4)) for _ in range(4)]
    for c in clients:
        c.start()
    try:
        done_q.get(timeout=300)
    finally:
        server.terminate()
        for c in clients:
            c.terminate()


if __name__ == "__main__":
    main()
