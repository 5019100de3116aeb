"""One ADS stream's runtime, shared by the SotW and Delta protocols.

Each stream runs one task that handles, in order, the requests its reader hands
over and the pushes the push queue signals; so protocol state needs no locks and
responses leave in the order they were decided. The protocol subclasses
(sotw.py, delta.py) say what a request means and what a push sends; this module
owns registration, the request queue, writes, ACK/NACK records and lifecycle.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Protocol

import grpc
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.message import DecodeError, Message

from istiod_py.cache.resources import Resources
from istiod_py.model import MeshState, Proxy, ProxyError, parse_proxy

from .connection import ConnectionInfo, Nack, PushRequest, Watch
from .mailbox import Mailbox
from .metrics import XdsMetrics, metric_type
from .nacklog import STORED_DETAIL_CHARS, NackLog, truncate
from .node import metadata_dict
from .sharing import SharedResponses
from .slots import ByteBudget, PushSlots
from .types import TypeUrl

log = logging.getLogger("istiod_py.xds")

# Events a stream's task handles besides raw requests.
PUSH = object()
CLOSE = object()
RECYCLE = object()

# Requests read from a client but not yet handled, per stream: past this the
# reader stops reading, so HTTP/2 flow control pushes back on the client.
MAX_QUEUED_REQUESTS = 32


class _Failed:
    """An exception raised by a request the reader handled itself, handed to the
    stream's task, which raises it as if it had handled the request (run())."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


class StreamError(Exception):
    """Ends a stream with a gRPC status (the message is the status detail)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# A debug type's answer (istiod's istio.io/debug/*): (name, message) pairs for the
# request's resource names, built when asked and never pushed.
DebugGenerator = Callable[[list[str]], list[tuple[str, Message]]]


class StreamHost(Protocol):
    """What a stream needs from the server that owns it (XdsServer). Streams are
    typed against this rather than XdsServer so that stream.py, sotw.py and
    delta.py never import server.py, which imports them."""

    state: Callable[[], MeshState]
    metrics: XdsMetrics
    send_timeout: float
    max_connection_age: float
    push_slots: PushSlots
    initial_slots: PushSlots
    send_bytes: ByteBudget
    live: set[Stream]
    sharing: SharedResponses
    nack_log: NackLog
    debug_types: dict[str, DebugGenerator]

    def generate(self, state: MeshState, proxy: Proxy, type_url: str) -> Resources: ...
    async def first_translation(self, state: MeshState, proxy: Proxy, type_url: str) -> None: ...
    def new_conn_id(self, proxy: Proxy) -> str: ...
    def ensure_watchdog(self) -> None: ...
    def register(self, stream: Stream) -> None: ...
    def unregister(self, stream: Stream) -> None: ...
    def on_ack(self, stream: Stream, w: Watch) -> None: ...
    def on_nack(self, stream: Stream, w: Watch) -> None: ...
    def on_pushed(self, stream: Stream, req: PushRequest) -> None: ...
    def count_sent(self, type_url: str, size: int) -> None: ...


class Stream:
    """One ADS stream (one Envoy). Subclassed per protocol: SotwStream, DeltaStream."""

    delta = False
    request_class: Any = None  # the protocol's request message class

    def __init__(self, server: StreamHost, context: grpc.aio.ServicerContext) -> None:
        self.server = server
        self.context = context
        self.info: ConnectionInfo | None = None
        self.events = Mailbox()
        self.pending: PushRequest | None = None
        self.pending_since = 0.0
        self.state: MeshState = server.state()
        self._nonce = itertools.count(1)
        # Six hex digits, as os.urandom(3).hex() gave, without a getrandom call per
        # stream: the prefix only keeps an earlier stream's nonces from matching.
        self._nonce_prefix = f"{random.getrandbits(24):06x}"
        self.closing = False
        self.task: asyncio.Task[Any] | None = None
        self.writing_since = 0.0
        self.recycle_at = 0.0
        self.stuck = False
        # Requests queued for the stream's task: at MAX_QUEUED_REQUESTS the reader
        # waits (on _room) until the task takes one.
        self._queued = 0
        self._room: asyncio.Future[None] | None = None
        # Requests queued or being handled (by the task or the reader; see _reader).
        self._requests_open = 0
        # (translation seconds, total seconds) of the last push.
        self.push_cost = (0.0, 0.0)
        # First responses decided by the request being handled, sent after it (defer_first).
        self._first_sends: list[tuple[str, Callable[[], Awaitable[object]]]] = []
        self._first_translated = False  # the stream's first response went through the batch

    # --- the protocol's part ----------------------------------------------------

    def fast_ack(self, raw: bytes) -> bool:
        """Handle `raw` if it is a plain ACK/NACK that sends nothing; False: not
        one, the full path must decode it."""
        raise NotImplementedError

    async def on_request(self, req: Any, raw: bytes) -> None:
        """Handle a decoded request of a known type on a registered stream."""
        raise NotImplementedError

    async def push_type(self, w: Watch, res: Resources, only: frozenset[str] | None, cds_changed: bool) -> bool:
        """Send what a push changed of one type; True if something was sent."""
        raise NotImplementedError

    def sent_resources(self, type_url: str) -> Resources | None:
        """The Resources last sent whole for `type_url` (SotW); None where the
        protocol keeps only names (Delta: see Watch.sent) or nothing was sent."""
        return None

    # --- plumbing -----------------------------------------------------------

    @property
    def proxy(self) -> Proxy:
        assert self.info is not None
        return self.info.proxy

    @property
    def conn_id(self) -> str:
        return self.info.conn_id if self.info else "?"

    def next_nonce(self) -> str:
        return f"{self._nonce_prefix}-{next(self._nonce)}"

    def request_push(self, req: PushRequest) -> None:
        """At most one push is pending per stream: a request that arrives while one
        waits (for a push slot, or behind a slow send) is merged into it, so a busy
        stream gets one push of the newest state, never a backlog."""
        if self.pending is None:
            self.pending = req
            self.pending_since = time.monotonic()
            self.events.put_nowait(PUSH)
        else:
            self.pending = self.pending.merge(req)

    async def write(self, data: bytes, type_url: str) -> None:
        # No timer per write: the server's watchdog cancels a stream whose write
        # has been blocked longer than the send timeout (a stuck client).
        assert self.info is not None
        # The response's bytes count against the server's byte budget until the
        # write returns (flow control passed, gRPC dropped its copy): slots.py.
        size = len(data)
        budget = self.server.send_bytes
        if not budget.try_acquire(size):  # no coroutine per write when there is room
            await budget.acquire(size)
        try:
            self.writing_since = time.monotonic()
            try:
                await self.context.write(data)
            finally:
                self.writing_since = 0.0
        finally:
            budget.release(size)
        self.info.bytes_sent += len(data)
        self.server.count_sent(type_url, len(data))

    def defer_first(self, type_url: str, send: Callable[[], Awaitable[object]]) -> None:
        """Send a type's first response once the request that asked for it is
        handled and dropped, behind the initial-response gate: in a connect
        storm thousands of streams wait for that gate, and each one holding its
        request (an EDS request names every cluster: ~225 KB raw and as much
        parsed, at 5,000 services) was ~1 GB at 2,000 proxies."""
        self._first_sends.append((type_url, send))

    def mark_sent(self, w: Watch, version: str, nonce: str, res: Resources | None = None) -> None:
        w.sent_res = res
        w.nonce_sent = nonce
        w.version_sent = version
        w.sends += 1
        w.sent_at = time.monotonic()
        w.state_version = self.state.version

    async def _reader(self, requests: AsyncIterator[bytes]) -> None:
        # context.read(), not `async for raw in requests`: gRPC's request iterator
        # keeps its last message referenced while it awaits the next one, so every
        # stream held its last request; after an EDS push that is each proxy's
        # EDS ACK naming every cluster (~240 KB at 5,000 services: ~480 MB at
        # 2,000 proxies). `requests` is that iterator, left unused.
        try:
            while True:
                raw = await self.context.read()
                if raw is grpc.aio.EOF:
                    break
                assert isinstance(raw, bytes)
                # A plain ACK (SotW or Delta: the answer to every response) is
                # handled right here when no earlier request is waiting or being
                # handled: it sends nothing, so it needs neither the queue nor a
                # task switch.
                not_ack = False  # fast_ack said no (it need not be asked again)
                if not self._requests_open and self.info is not None and not self.closing:
                    try:
                        if self.fast_ack(raw):
                            del raw  # not kept while the next request is awaited (memory)
                            continue
                        not_ack = True
                    except Exception:  # leave it to the full path, which reports errors
                        log.debug("fast ACK path failed", exc_info=True)
                if self.events.idle() and not self.closing:
                    # The stream's task waits for work and none is queued: handle
                    # the request here rather than wake the task for it (a task
                    # switch and a queue round trip per request: a connect is five
                    # requests). The task is held meanwhile, so a push or a close
                    # that arrives now waits for this request, as if queued after it.
                    # (Inline, not a method taking `raw`: the request must not be
                    # referenced while its first response waits, see defer_first.)
                    self.events.hold()
                    try:
                        self._requests_open += 1
                        try:
                            await self._on_raw(raw, not_ack)
                        finally:
                            self._requests_open -= 1
                        del raw
                        await self._send_first()
                    except Exception as e:  # StreamError, or a bug: raised by the task, as it would be
                        self.events.put_nowait(_Failed(e))
                        return
                    finally:
                        self.events.release()
                    continue
                while self._queued >= MAX_QUEUED_REQUESTS:
                    self._room = asyncio.get_running_loop().create_future()
                    await self._room
                self._queued += 1
                self._requests_open += 1
                self.events.put_nowait(raw)
                # Not kept while the next request is awaited: a stream waiting for
                # its first EDS response held its ~225 KB request here (5,000 names).
                del raw
        except (asyncio.CancelledError, grpc.aio.AioRpcError):
            pass
        except Exception as e:  # the client went away mid-read
            log.debug("stream reader ended: %s", e)
        finally:
            self.events.put_nowait(CLOSE)

    async def _send_first(self) -> None:
        if self._first_sends and not self._first_translated and self.info is not None:
            # The stream's first translation is made with the other new streams' (first_batch.py).
            self._first_translated = True
            await self.server.first_translation(self.state, self.proxy, self._first_sends[0][0])
        while self._first_sends:
            _, send = self._first_sends.pop(0)
            async with self.server.initial_slots:
                await send()

    async def run(self, requests: AsyncIterator[bytes]) -> None:
        self.task = asyncio.current_task()
        max_age = self.server.max_connection_age
        # Recycled after the maximum age, with jitter, so proxies rebalance.
        self.recycle_at = time.monotonic() + max_age * (0.9 + 0.2 * random.random()) if max_age else 0.0
        self.server.ensure_watchdog()
        self.server.live.add(self)
        # The task's loop, not asyncio.create_task: no second running-loop lookup
        # (a getpid() system call on Python 3.11, see mailbox.py).
        assert self.task is not None
        reader = self.task.get_loop().create_task(self._reader(requests))
        try:
            await self._loop()
        except asyncio.CancelledError:
            if not self.stuck:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # the watchdog's cancel is handled: end the RPC normally
            log.warning("closing xDS stream %s: a send blocked for over %ss", self.conn_id, self.server.send_timeout)
            self.server.metrics.stream_errors.labels("DEADLINE_EXCEEDED").inc()
            self.context.set_code(grpc.StatusCode.DEADLINE_EXCEEDED)
            self.context.set_details(f"a send blocked for over {self.server.send_timeout}s")
        except StreamError as e:
            log.info("closing xDS stream %s: %s", self.conn_id, e.message)
            self.server.metrics.stream_errors.labels(e.code.name).inc()
            await self.context.abort(e.code, e.message)
        finally:
            reader.cancel()
            self.server.live.discard(self)
            if self.info is not None:
                self.server.unregister(self)

    async def _loop(self) -> None:
        while True:
            ev = await self.events.get()
            if ev is RECYCLE:
                log.info("recycling xDS stream %s after max connection age", self.conn_id)
                return  # ends the stream with OK; the proxy reconnects (rebalancing)
            if ev is CLOSE or self.closing:
                return
            if ev is PUSH:
                if self.pending is None or self.info is None:
                    continue
                async with self.server.push_slots:
                    # Taken only now: what arrived while this stream waited for a
                    # slot was merged into it, so one push carries the newest state.
                    req, self.pending = self.pending, None
                    self.server.metrics.proxy_queue_time.observe(time.monotonic() - self.pending_since)
                    if req is not None and not self.closing:
                        await self._push(req)
                continue
            if type(ev) is _Failed:
                raise ev.error
            assert isinstance(ev, bytes)
            self._queued -= 1
            room = self._room
            if room is not None and not room.done():
                room.set_result(None)
            try:
                await self._on_raw(ev)
            finally:
                self._requests_open -= 1
            ev = None  # the request is not held while its first response waits (defer_first)
            await self._send_first()

    # --- requests -----------------------------------------------------------

    def _parse(self, raw: bytes) -> Any:
        cls = self.request_class
        try:
            return cls.FromString(raw)
        except DecodeError as e:
            raise StreamError(grpc.StatusCode.INVALID_ARGUMENT, f"malformed {cls.__name__}: {e}") from None

    def _register(self, req: Any) -> None:
        if not req.HasField("node") or not req.node.id:
            raise StreamError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "the first request on a stream must carry a node with an id "
                "(sidecar~IP~NAME.NAMESPACE~NAMESPACE.svc.cluster.local)",
            )
        node = req.node
        has_metadata = node.HasField("metadata")
        # A proxy that reconnects (a storm, a recycled stream) sends the same node:
        # parsed once (the JSON conversion of its metadata is most of a registration).
        key = (node.id, node.metadata.SerializeToString(deterministic=True) if has_metadata else b"")
        proxies = self.server.sharing.proxies
        proxy = proxies.get(key)
        if proxy is None:
            metadata = metadata_dict(node.metadata) if has_metadata else {}
            try:
                proxy = parse_proxy(node.id, metadata)
            except ProxyError as e:
                raise StreamError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
            proxies.put(key, proxy, len(key[0]) + len(key[1]))
        peer = self.context.peer() or ""
        self.info = ConnectionInfo(self.server.new_conn_id(proxy), proxy, self.delta, peer)
        self.info.last_push_state = self.state.version
        self.server.register(self)

    async def _on_raw(self, raw: bytes, not_ack: bool = False) -> None:
        if not not_ack and self.info is not None and self.fast_ack(raw):
            return
        req = self._parse(raw)
        if self.info is None:
            self._register(req)
        debug = self.server.debug_types.get(req.type_url)
        if debug is not None:
            if not req.response_nonce:  # an ACK of a debug answer needs nothing
                await self._debug_answer(req, debug(list(req.resource_names)))
            return
        if not TypeUrl.known(req.type_url):
            raise StreamError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"unknown type_url {req.type_url!r}; served: {', '.join(TypeUrl.PUSH_ORDER)}",
            )
        await self.on_request(req, raw)

    async def _debug_answer(self, req: Any, items: list[tuple[str, Message]]) -> None:
        """Answer a debug type (as istiod's debug generator does: on request only,
        no watch, no version to ACK against)."""
        version = str(time.time_ns())
        if self.delta:
            dresp = discovery_pb2.DeltaDiscoveryResponse(
                type_url=req.type_url, system_version_info=version, nonce=self.next_nonce()
            )
            for name, msg in items:
                r = dresp.resources.add(name=name, version=version)
                r.resource.Pack(msg)
            data = dresp.SerializeToString()
        else:
            resp = discovery_pb2.DiscoveryResponse(type_url=req.type_url, version_info=version, nonce=self.next_nonce())
            for _, msg in items:
                resp.resources.add().Pack(msg)
            data = resp.SerializeToString()
        await self.write(data, req.type_url)

    def record_nack(self, w: Watch, req: Any, version: str, names: Iterable[str]) -> None:
        w.nacks += 1
        w.last_nack = Nack(
            version=version,
            nonce=req.response_nonce,
            message=truncate(req.error_detail.message, STORED_DETAIL_CHARS),
            code=req.error_detail.code,
            names=tuple(names),
            at=time.time(),
        )
        m = self.server.metrics
        m.child(m.rejects, metric_type(w.type_url)).inc()
        self.server.nack_log.nack(
            self.proxy.id, TypeUrl.SHORT.get(w.type_url, w.type_url), version, req.error_detail.message
        )
        self.server.on_nack(self, w)

    def record_ack(self, w: Watch, version: str, nonce: str) -> None:
        if nonce == w.nonce_sent and w.sent_res is not None:
            w.acked_res = w.sent_res
        w.acks += 1
        w.version_acked = version
        w.nonce_acked = nonce
        w.acked_at = time.monotonic()
        self.server.on_ack(self, w)

    # --- pushes ---------------------------------------------------------------

    async def _push(self, req: PushRequest) -> None:
        assert self.info is not None
        t0 = time.perf_counter()
        build_s = 0.0
        self.state = req.state
        self.info.pushes += 1
        if not req.full and self.proxy.ip in req.addresses:
            req = PushRequest(req.state, True, req.eds_hosts, req.reason, req.addresses, req.start)
        cds_changed = False
        for t in TypeUrl.PUSH_ORDER:
            w = self.info.watches.get(t)
            if w is None:
                continue
            if not req.full and t != TypeUrl.ENDPOINT:
                continue
            tg = time.perf_counter()
            began = time.monotonic()
            res = self.server.generate(self.state, self.proxy, t)
            build_s += time.perf_counter() - tg
            only: frozenset[str] | None = None
            if not req.full and t == TypeUrl.ENDPOINT:
                only = self.server.sharing.eds_changed_names(res, req.eds_hosts)
                if not only:
                    continue
            sent = await self.push_type(w, res, only, cds_changed)
            if sent:
                m = self.server.metrics
                m.child(m.push_time, metric_type(t)).observe(time.monotonic() - began)
            if t == TypeUrl.CLUSTER and sent:
                cds_changed = True
        self.info.last_push_state = self.state.version
        self.push_cost = (build_s, time.perf_counter() - t0)  # for push attribution (attribution.py)
        self.server.on_pushed(self, req)
