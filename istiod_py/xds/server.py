"""The ADS server: wires the SotW and Delta streams (sotw.py, delta.py) to the
translator, the push gate (slots.py) and the shared responses (sharing.py), and
serves them as the gRPC service AggregatedDiscoveryService.

Module map (one reason to change each): wire.py reads request bytes (the SotW
ACK fast path); slots.py caps concurrent sends; stream.py is one stream's task,
queue, registration and ACK/NACK records; sotw.py and delta.py are the two
protocols; sharing.py holds what streams share; this module owns the set of
streams, the watchdog, pushes to all, drain and the gRPC handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from istiod_py.cache.resources import Resources
from istiod_py.model import MeshState, Proxy

from .attribution import PushAttribution
from .connection import PushRequest, Watch
from .delta import DeltaStream
from .first_batch import FirstBatch
from .metrics import XdsMetrics, metric_type
from .nacklog import NackLog
from .quarantine import Quarantine
from .sharing import SharedResponses
from .slots import ByteBudget, PushSlots
from .sotw import SotwStream
from .stream import CLOSE, MAX_QUEUED_REQUESTS, RECYCLE, DebugGenerator, Stream, StreamError
from .types import TypeUrl

__all__ = ["ADS_SERVICE", "MAX_QUEUED_REQUESTS", "Generator", "PushSlots", "Stream", "StreamError", "XdsServer"]

log = logging.getLogger("istiod_py.xds")

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"

Generator = Callable[[MeshState, Proxy, str], Resources]

# What Envoy asks for right after its clusters (XdsServer._prefetch).
PREFETCH_AFTER_CDS = (TypeUrl.ENDPOINT, TypeUrl.LISTENER, TypeUrl.ROUTE)


class XdsServer:
    def __init__(
        self,
        generate: Generator,
        state: Callable[[], MeshState],
        *,
        metrics: XdsMetrics | None = None,
        send_timeout: float = 30.0,
        max_concurrent_pushes: int = 1000,
        max_concurrent_initial: int = 50,
        max_send_bytes: int = 64 * 2**20,
        max_connection_age: float = 0.0,
        isolated: Callable[[], Generator] | None = None,
        nack_quarantine: bool = False,
        first_batch_s: float = 0.0,
    ) -> None:
        self._generate = generate
        self.state = state
        self.metrics = metrics or XdsMetrics()
        self.send_timeout = send_timeout
        self.max_connection_age = max_connection_age
        # Pushes to connected streams, and first responses to new streams, are
        # capped separately: a reconnect storm queues (in arrival order) without
        # starving config pushes, and pushes cannot starve new streams.
        self.push_slots = PushSlots(max_concurrent_pushes, self.metrics.push_inflight)
        self.initial_slots = PushSlots(max_concurrent_initial, self.metrics.initial_push_inflight)
        # Under both: the bytes being written at once, over every stream (gRPC
        # core's copies of large responses are the server's largest memory).
        self.send_bytes = ByteBudget(max_send_bytes)
        self.streams: dict[str, Stream] = {}
        # Every running stream, registered (sent a node) or not: what a drain ends.
        self.live: set[Stream] = set()
        self.draining = False
        self._conn_seq = itertools.count(1)
        self.ack_listeners: list[Callable[[Stream, Watch], None]] = []
        self._watchdog: asyncio.Task[None] | None = None
        self._push_counters: dict[str, Any] = {}
        self.sharing = SharedResponses()
        self.nack_log = NackLog()
        self._watchdog_grace = 3
        self.watchdog_interval = 1.0
        self.push_listeners: list[Callable[[Stream, PushRequest], None]] = []
        # NACK to origin: names the config a proxy rejects and serves it without (quarantine.py).
        # `isolated` makes a translator of its own for those filtered states.
        self.quarantine = Quarantine(self, isolated, enabled=nack_quarantine)
        # Push attribution: which config changes trigger pushes and their cost (attribution.py).
        self.attribution = PushAttribution()
        self.push_listeners.append(self.attribution.on_pushed)
        # Types answered on request from outside the translator (istiod's
        # istio.io/debug/syncz and istio.io/debug/config_dump; see server.py).
        self.debug_types: dict[str, DebugGenerator] = {}
        # (id(proxy), type_url) -> (proxy, Resources) for _gen_memo_state (_memo_generate).
        self._gen_memo: dict[tuple[int, str], tuple[Proxy, Resources]] = {}
        self._gen_memo_state: MeshState | None = None
        # New streams' first translations, in batches (first_batch.py); 0: one at a time.
        self.first_batch = FirstBatch(self._translate_first, first_batch_s)

    # --- watchdog -----------------------------------------------------------

    def ensure_watchdog(self) -> None:
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        """Once a second: recycle streams past their maximum age, and cancel a
        stream whose send has been blocked past the send timeout, so one stuck
        client holds neither a push slot nor memory for long."""
        while self.streams or self._watchdog_grace > 0:
            await asyncio.sleep(self.watchdog_interval)
            self._watchdog_grace = self._watchdog_grace - 1 if not self.streams else 3
            now = time.monotonic()
            for stream in list(self.streams.values()):
                if stream.writing_since and now - stream.writing_since > self.send_timeout and stream.task:
                    stream.stuck = True
                    stream.task.cancel()
                elif stream.recycle_at and now >= stream.recycle_at:
                    stream.recycle_at = 0.0
                    stream.events.put_nowait(RECYCLE)

    # --- hooks --------------------------------------------------------------

    def generate(self, state: MeshState, proxy: Proxy, type_url: str) -> Resources:
        t0 = time.thread_time()
        try:
            res = self._generate_counted(state, proxy, type_url)
        finally:
            self._count_translation(type_url, t0)
        if type_url == TypeUrl.CLUSTER and self._gen_memo_state is state:
            self._prefetch(state, proxy)
        return res

    async def first_translation(self, state: MeshState, proxy: Proxy, type_url: str) -> None:
        """Before a new stream's first response: have its translation made in a
        batch with the other streams connecting now (first_batch.py), unless it
        is in the memo already or is never memoized (SDS, quarantined proxies)."""
        if self.first_batch.window_s <= 0 or type_url == TypeUrl.SECRET:
            return
        if self._quarantined(proxy):
            return
        if self._gen_memo_state is state and (id(proxy), type_url) in self._gen_memo:
            return
        await self.first_batch.wait(state, proxy, type_url)

    def _translate_first(self, state: MeshState, proxy: Proxy, type_url: str) -> None:
        """Into the memo, counted as translation; an error is left to the stream's
        own request, which reports it (as a StreamError, logged once)."""
        t0 = time.thread_time()
        try:
            self._memo_generate(state, proxy, type_url)
        except Exception:
            log.debug("batched translation of %s for %s failed", TypeUrl.SHORT.get(type_url), proxy.id, exc_info=True)
            return
        finally:
            self._count_translation(type_url, t0)
        if type_url == TypeUrl.CLUSTER:
            self._prefetch(state, proxy)

    def _quarantined(self, proxy: Proxy) -> bool:
        """Served through the quarantine's own translator (never memoized here)."""
        return bool(self.quarantine.cases) and self.quarantine.applies(proxy)

    def _count_translation(self, type_url: str, since: float) -> None:
        """The event loop's thread time in the translator (istiod_py_xds_generate_cpu_seconds)."""
        self.metrics.child(self.metrics.generate_cpu, metric_type(type_url)).inc(time.thread_time() - since)

    def _prefetch(self, state: MeshState, proxy: Proxy) -> None:
        """After a proxy's clusters, translate its endpoints, listeners and routes
        too (into the memo), where they would otherwise be asked for one at a
        time by requests interleaved with a thousand other streams' work. Envoy
        asks for all three right after CDS; translated back to back they reuse
        the proxy's scope and what its clusters just read, still in the CPU's
        caches: a connect at 1,000 namespaces cost 0.13-0.16 ms less per proxy
        (docs/benchmarks.md). A failure here is left to the request that asks
        for the type, which reports it."""
        if self._quarantined(proxy):
            return
        memo = self._gen_memo
        for t in PREFETCH_AFTER_CDS:
            if (id(proxy), t) in memo:
                continue
            t0 = time.thread_time()
            try:
                memo[(id(proxy), t)] = (proxy, self._generate(state, proxy, t))
            except Exception:
                log.debug("prefetching %s for %s failed", TypeUrl.SHORT.get(t), proxy.id, exc_info=True)
                return
            finally:
                self._count_translation(t, t0)

    def _generate_counted(self, state: MeshState, proxy: Proxy, type_url: str) -> Resources:
        try:
            if self._quarantined(proxy):
                return self.quarantine.generate(state, proxy, type_url, self._generate)
            if type_url == TypeUrl.SECRET:  # may read more than the state (Kubernetes Secrets)
                return self._generate(state, proxy, type_url)
            return self._memo_generate(state, proxy, type_url)
        except Exception as e:
            self.metrics.internal_errors.inc()
            log.exception("translating %s for %s failed", TypeUrl.SHORT.get(type_url), proxy.id)
            raise StreamError(
                grpc.StatusCode.INTERNAL,
                f"translating {TypeUrl.SHORT.get(type_url)} for {proxy.id} failed: {e!r}",
            ) from e

    def _memo_generate(self, state: MeshState, proxy: Proxy, type_url: str) -> Resources:
        """The translator's answer for (state, proxy, type), kept for the current
        state: translation is a pure function of the two, and a proxy that
        reconnects with the same node gets the same Proxy object (the parsed-node
        cache in sharing.py), so a reconnect storm asks the same question
        thousands of times; the translator's own memo answers it too, but through
        scope and EnvoyFilter lookups (~12% of a storm's event-loop CPU)."""
        memo = self._gen_memo
        if self._gen_memo_state is not state or len(memo) > self._gen_memo_cap():
            memo.clear()
            self._gen_memo_state = state
        key = (id(proxy), type_url)
        hit = memo.get(key)
        if hit is not None and hit[0] is proxy:  # the entry holds the proxy: its id is not reused
            return hit[1]
        res = self._generate(state, proxy, type_url)
        memo[key] = (proxy, res)
        return res

    def _gen_memo_cap(self) -> int:
        # Entries of proxies that went away stay until the state changes: bounded.
        return 8 * max(len(self.streams), 1000)

    def new_conn_id(self, proxy: Proxy) -> str:
        return f"{proxy.id}-{next(self._conn_seq)}"

    def register(self, stream: Stream) -> None:
        assert stream.info is not None
        self.streams[stream.info.conn_id] = stream
        self.metrics.child(self.metrics.connections, "delta" if stream.delta else "sotw").inc()
        self.attribution.on_registered(stream)
        log.info("proxy connected: %s (%s)", stream.info.conn_id, "delta" if stream.delta else "sotw")

    def unregister(self, stream: Stream) -> None:
        assert stream.info is not None
        if self.streams.pop(stream.info.conn_id, None) is not None:
            self.metrics.child(self.metrics.connections, "delta" if stream.delta else "sotw").dec()
            log.info("proxy disconnected: %s", stream.info.conn_id)

    def on_ack(self, stream: Stream, w: Watch) -> None:
        if self.quarantine.cases:
            self.quarantine.on_ack(stream, w)
        for fn in self.ack_listeners:
            fn(stream, w)

    def on_nack(self, stream: Stream, w: Watch) -> None:
        try:
            self.quarantine.on_nack(stream, w)
        except Exception:  # tracing a NACK must never end the stream
            log.exception("tracing a NACK from %s failed", stream.conn_id)

    def on_pushed(self, stream: Stream, req: PushRequest) -> None:
        self.metrics.convergence.observe(time.monotonic() - req.start)
        for fn in self.push_listeners:
            fn(stream, req)

    def count_sent(self, type_url: str, size: int) -> None:
        per_type = self._push_counters.get(type_url)
        if per_type is None:
            short = metric_type(type_url)
            per_type = self._push_counters[type_url] = (
                self.metrics.pushes.labels(short),
                self.metrics.config_size.labels(short),
            )
        per_type[0].inc()
        self.metrics.bytes_sent.inc(size)
        per_type[1].observe(size)

    # --- pushing --------------------------------------------------------------

    def push(self, req: PushRequest) -> None:
        self.attribution.on_push(req)
        self.metrics.observe_push(req)
        for stream in list(self.streams.values()):
            stream.request_push(req)

    async def close(self, timeout: float = 5.0) -> None:
        """Drain: refuse new streams; let every stream finish the push it is
        sending, then end it with OK so its proxy reconnects (to another replica,
        or to this one when it returns), keeping its config meanwhile. Streams
        still open after `timeout` (stuck sends) are cancelled."""
        self.draining = True
        streams = list(self.live)
        for stream in streams:
            stream.closing = True
            stream.events.put_nowait(CLOSE)
        tasks = [s.task for s in streams if s.task is not None and not s.task.done()]
        if tasks:
            _, left = await asyncio.wait(tasks, timeout=max(timeout, 0.0))
            if left:
                log.warning("drain deadline (%ss): cancelling %d xDS streams", timeout, len(left))
                for t in left:
                    t.cancel()
                await asyncio.wait(left, timeout=1.0)
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watchdog
            self._watchdog = None

    # --- gRPC -----------------------------------------------------------------

    async def _serve(self, delta: bool, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> None:
        if self.draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the control plane is shutting down")
        stream: Stream = DeltaStream(self, context) if delta else SotwStream(self, context)
        await stream.run(requests)

    async def _sotw(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> None:
        await self._serve(False, requests, context)

    async def _delta(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> None:
        await self._serve(True, requests, context)

    def rpc_handler(self) -> grpc.GenericRpcHandler:
        def identity(b: bytes) -> bytes:
            return b

        return grpc.method_handlers_generic_handler(
            ADS_SERVICE,
            {
                "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                    self._sotw, request_deserializer=identity, response_serializer=identity
                ),
                "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
                    self._delta, request_deserializer=identity, response_serializer=identity
                ),
            },
        )
