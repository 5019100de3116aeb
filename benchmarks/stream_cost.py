"""CPU of the xDS layer alone, per stream: the SotW/Delta stream code, asyncio
tasks and queues, metrics and debug recorders, with gRPC replaced by an
in-process context (a write is a no-op, requests come from a queue) and the
translator by fixed resources. What the end-to-end benchmark measures minus this
is gRPC's (grpc.aio, core, the kernel's TCP).

    python -m benchmarks.stream_cost [--streams 1000] [--names 4] [--rounds 3]

Per stream: a connect as the Go loadgen does it (CDS; ACK + EDS + LDS; ACKs +
RDS; ACK), then endpoint-only pushes (one write and one ACK each), then a
reconnect storm (every client closes; each comes back with the same node, its
translations cached). Each proxy is distinct (own node id and namespace), as in
the 1,000-namespace mesh. tests/unit/test_stream_cost_bench.py runs it small.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import struct_pb2

from istiod_py.cache.resources import Resources, build, resources_of
from istiod_py.debug.sent import SentRecorder
from istiod_py.model import MeshState, Proxy
from istiod_py.xds.connection import PushRequest
from istiod_py.xds.server import XdsServer
from istiod_py.xds.sotw import SotwStream
from istiod_py.xds.types import TypeUrl

CDS, EDS, LDS, RDS = TypeUrl.CLUSTER, TypeUrl.ENDPOINT, TypeUrl.LISTENER, TypeUrl.ROUTE


class FakeContext:
    """The part of grpc.aio's ServicerContext a stream uses; a write completes at
    once, a read takes the next request the benchmark queued (None: the client
    half-closed, grpc.aio.EOF)."""

    total = 0
    any_write: asyncio.Event

    def __init__(self, requests: Requests) -> None:
        self.written = 0
        self.wrote = asyncio.Event()
        self.requests = requests
        self.task: asyncio.Task[None] | None = None

    async def read(self) -> Any:
        raw = await self.requests.q.get()
        return grpc.aio.EOF if raw is None else raw

    async def write(self, data: bytes) -> None:
        self.written += 1
        FakeContext.total += 1
        self.wrote.set()
        FakeContext.any_write.set()

    def peer(self) -> str:
        return "ipv4:127.0.0.1:40000"

    def set_code(self, code: Any) -> None:
        pass

    def set_details(self, details: str) -> None:
        pass

    async def abort(self, code: Any, details: str) -> None:
        raise RuntimeError(details)


class Requests:
    """A stream's requests, in order; what FakeContext.read() returns."""

    def __init__(self) -> None:
        self.q: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        # The request iterator gRPC hands the handler; the stream reads with
        # context.read() and never iterates it (stream.py says why).
        raise AssertionError("the stream must read with context.read()")
        yield b""  # pragma: no cover (makes this an async generator)


def resources(i: int, names: int, gen: int) -> dict[str, Resources]:
    clusters = [f"outbound|{9000 + k}||svc-{k}.ns-{i}.svc.cluster.local" for k in range(names)]
    out: dict[str, Resources] = {}
    out[CDS] = resources_of(
        {c: build(c, CDS, cluster_pb2.Cluster(name=c, type=cluster_pb2.Cluster.EDS)) for c in clusters}
    )
    eds = {}
    for c in clusters:
        cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=c)
        for e in range(5):
            sa = cla.endpoints.add().lb_endpoints.add().endpoint.address.socket_address
            sa.address, sa.port_value = f"10.{i % 250}.{e}.{gen % 250}", 8080
        eds[c] = build(c, EDS, cla)
    out[EDS] = resources_of(eds)
    out[LDS] = resources_of({"0.0.0.0_9080": build("0.0.0.0_9080", LDS, listener_pb2.Listener(name="0.0.0.0_9080"))})
    out[RDS] = resources_of({"9080": build("9080", RDS, route_pb2.RouteConfiguration(name="9080"))})
    return out


def node_request(i: int) -> discovery_pb2.DiscoveryRequest:
    req = discovery_pb2.DiscoveryRequest(type_url=CDS)
    req.node.id = f"sidecar~10.1.{i // 250}.{i % 250}~client-{i}.ns-{i}~ns-{i}.svc.cluster.local"
    md = struct_pb2.Struct()
    md.update({"NAMESPACE": f"ns-{i}", "LABELS": {"app": f"client-{i}"}, "SERVICE_ACCOUNT": "default"})
    req.node.metadata.CopyFrom(md)
    return req


# A benchmark that stops making progress fails instead of hanging (it once hung
# when the stream's reader moved to context.read(), which the fake lacked).
STALL_S = 30.0


async def _until(cond: Callable[[], bool], event: asyncio.Event, what: str) -> None:
    if cond():
        return
    # One timer per wait, not asyncio.wait_for's task per wake: the harness's own
    # CPU is inside the measured time.
    stalled = [False]

    def stall() -> None:
        stalled[0] = True
        event.set()

    timer = asyncio.get_running_loop().call_later(STALL_S, stall)
    try:
        while not cond():
            if stalled[0]:
                raise RuntimeError(f"stream_cost: no progress for {STALL_S}s waiting for {what}")
            event.clear()
            await event.wait()
    finally:
        timer.cancel()


async def connect(server: XdsServer, i: int, names: list[str]) -> tuple[SotwStream, FakeContext, Requests]:
    reqs = Requests()
    ctx = FakeContext(reqs)
    stream = SotwStream(server, ctx)  # type: ignore[arg-type]
    ctx.task = asyncio.get_running_loop().create_task(stream.run(reqs.__aiter__()))
    ctx.task.add_done_callback(lambda _: ctx.wrote.set())  # wakes answer(), which reports it

    async def answer(*msgs: discovery_pb2.DiscoveryRequest, writes: int) -> None:
        for m in msgs:
            reqs.q.put_nowait(m.SerializeToString())

        def done() -> bool:
            if ctx.task is not None and ctx.task.done():
                raise RuntimeError(f"stream_cost: stream {i} ended during its connect: {ctx.task!r}")
            return ctx.written >= writes

        await _until(done, ctx.wrote, f"stream {i}'s response {writes}")

    def ack(t: str, names: list[str] = []) -> discovery_pb2.DiscoveryRequest:  # noqa: B006
        assert stream.info is not None
        w = stream.info.watches[t]
        return discovery_pb2.DiscoveryRequest(
            type_url=t, version_info=w.version_sent, response_nonce=w.nonce_sent, resource_names=names
        )

    await answer(node_request(i), writes=1)
    await answer(ack(CDS), discovery_pb2.DiscoveryRequest(type_url=EDS, resource_names=names),
                 discovery_pb2.DiscoveryRequest(type_url=LDS), writes=3)  # fmt: skip
    await answer(ack(EDS, names), ack(LDS), discovery_pb2.DiscoveryRequest(type_url=RDS, resource_names=["9080"]),
                 writes=4)  # fmt: skip
    reqs.q.put_nowait(ack(RDS, ["9080"]).SerializeToString())
    return stream, ctx, reqs


Streams = list[tuple[SotwStream, FakeContext, Requests]]


async def connect_all(server: XdsServer, n: int, names: int, acked: list[int], acks: asyncio.Event) -> Streams:
    """Connect n streams and wait until each has ACKed its four responses."""
    acked[0] = 0
    streams = await asyncio.gather(
        *(connect(server, i, [f"outbound|{9000 + k}||svc-{k}.ns-{i}.svc.cluster.local" for k in range(names)])
          for i in range(n))
    )  # fmt: skip
    await _until(lambda: acked[0] >= 4 * n, acks, "the connects' last ACKs")
    return list(streams)


async def disconnect_all(server: XdsServer, streams: Streams) -> None:
    """Every client half-closes; wait until every stream's task has ended."""
    for _, _, reqs in streams:
        reqs.q.put_nowait(None)
    tasks = [ctx.task for _, ctx, _ in streams if ctx.task is not None]
    _, left = await asyncio.wait(tasks, timeout=STALL_S)
    if left or server.streams:
        raise RuntimeError(f"stream_cost: {len(left)} streams still running after the clients closed")


async def main_async(args: argparse.Namespace) -> dict[str, float]:
    """Run the benchmark; returns ms of CPU per stream by phase (also printed)."""
    out: dict[str, float] = {}
    by_ns: dict[str, dict[str, Resources]] = {}
    gen = [0]

    def generate(state: MeshState, proxy: Proxy, t: str) -> Resources:
        key = f"{proxy.namespace}/{state.version}"
        if key not in by_ns:
            by_ns[key] = resources(int(proxy.namespace.split("-")[1]), args.names, state.version)
        return by_ns[key][t]

    states = [MeshState(1, {}, {}, {})]
    server = XdsServer(generate, lambda: states[-1])
    SentRecorder(server)  # the debug server's recorder, as `serve` has it
    FakeContext.total = 0
    FakeContext.any_write = asyncio.Event()
    acked = [0]
    acks = asyncio.Event()

    def count_ack(stream: Any, w: Any) -> None:
        acked[0] += 1
        acks.set()

    server.ack_listeners.append(count_ack)
    # Translation (here: building the fixed resources) is not the xDS layer's: done first.
    for i in range(args.streams):
        generate(states[-1], _proxy_ns(i), CDS)
    gc.collect()
    gc.freeze()
    c0 = time.process_time()
    t0 = time.perf_counter()
    streams = await connect_all(server, args.streams, args.names, acked, acks)
    out["connect"] = 1e3 * (time.process_time() - c0) / args.streams
    print(
        f"connect: {out['connect']:.3f} ms CPU per stream "
        f"({args.streams} streams, {args.names} clusters each; wall {time.perf_counter() - t0:.2f}s)"
    )
    # Each push changes one host of every proxy (--changed-hosts: of the first N proxies).
    hosts = frozenset(f"svc-0.ns-{i}.svc.cluster.local" for i in range(min(args.changed_hosts, args.streams)))
    for r in range(args.rounds):
        gen[0] += 1
        states.append(MeshState(len(states) + 1, {}, {}, {}))
        for i in range(args.streams):
            generate(states[-1], _proxy_ns(i), CDS)
        changed = streams[: len(hosts)]  # proxy i sees host svc-0.ns-i
        target = sum(ctx.written for _, ctx, _ in streams) + len(changed)
        c0 = time.process_time()
        server.push(PushRequest(states[-1], False, hosts, "endpoints"))
        await _until(lambda: FakeContext.total >= target, FakeContext.any_write, "the EDS push's writes")  # noqa: B023
        pushed = time.process_time() - c0
        # The ACKs (built outside the measured time: the client's work).
        eds_acks = []
        for stream, _, _reqs in changed:
            assert stream.info is not None
            w = stream.info.watches[EDS]
            eds_acks.append(
                discovery_pb2.DiscoveryRequest(
                    type_url=EDS,
                    version_info=w.version_sent,
                    response_nonce=w.nonce_sent,
                    resource_names=sorted(w.names),
                ).SerializeToString()
            )
        acked[0] = 0
        c0 = time.process_time()
        for (_, _, reqs), raw in zip(changed, eds_acks, strict=True):
            reqs.q.put_nowait(raw)
        await _until(lambda: acked[0] >= len(changed), acks, "the EDS ACKs")  # noqa: B023
        ack_cpu = time.process_time() - c0
        out[f"eds{r}"] = 1e3 * (pushed + ack_cpu) / args.streams
        print(
            f"eds push {r}: {out[f'eds{r}']:.3f} ms CPU per stream "
            f"(push {1e3 * pushed / args.streams:.3f}, ACK {1e3 * ack_cpu / args.streams:.3f}; "
            f"{len(hosts)} hosts changed)"
        )
    # A reconnect storm: every client goes away and comes back with the same node
    # (translations and parsed nodes cached, as after an istiod restart behind a
    # load balancer, or a network blip).
    c0 = time.process_time()
    await disconnect_all(server, streams)
    out["disconnect"] = 1e3 * (time.process_time() - c0) / args.streams
    c0 = time.process_time()
    streams = await connect_all(server, args.streams, args.names, acked, acks)
    out["reconnect"] = 1e3 * (time.process_time() - c0) / args.streams
    print(f"storm: disconnect {out['disconnect']:.3f} + reconnect {out['reconnect']:.3f} ms CPU per stream")
    await disconnect_all(server, streams)
    gc.unfreeze()
    return out


def _proxy_ns(i: int) -> Proxy:
    from istiod_py.model import parse_proxy

    return parse_proxy(node_request(i).node.id, {"NAMESPACE": f"ns-{i}"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--names", type=int, default=4, help="clusters per proxy")
    ap.add_argument("--rounds", type=int, default=3, help="endpoint-only pushes")
    ap.add_argument("--changed-hosts", type=int, default=1000, help="hosts whose endpoints each push changes")
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
