"""The ADS server: StreamAggregatedResources (SotW) and DeltaAggregatedResources.

Each stream runs one task that handles, in order, the requests its reader hands
over and the pushes the push queue signals; so protocol state needs no locks and
responses leave in the order they were decided. Responses are bytes concatenated
from resources serialized once (see cache/resources.py).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import itertools
import logging
import os
import random
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from collections.abc import Set as AbstractSet
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from istiod_py.cache.resources import Built, Resources, delta_response, sotw_response
from istiod_py.model import MeshState, Proxy, ProxyError, parse_proxy

from .connection import ConnectionInfo, Nack, PushRequest, Watch
from .metrics import XdsMetrics
from .sharing import SharedCache
from .types import TypeUrl

log = logging.getLogger("istiod_py.xds")

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"

Generator = Callable[[MeshState, Proxy, str], Resources]

_PUSH = object()
_CLOSE = object()
_RECYCLE = object()

# Requests read from a client but not yet handled, per stream: past this the
# reader stops reading, so HTTP/2 flow control pushes back on the client.
MAX_QUEUED_REQUESTS = 32


class StreamError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    """Decode a protobuf varint at buf[i]: (value, index after it)."""
    shift = value = 0
    while True:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise IndexError("varint too long")


# DiscoveryRequest wire tags: version_info (1), node (2), resource_names (3), type_url (4).
_TAG_VERSION, _TAG_NODE, _TAG_NAME, _TAG_TYPE = 0x0A, 0x12, 0x1A, 0x22


def _names_start(raw: bytes) -> int:
    """Where the resource_names of an encoded DiscoveryRequest would begin, for
    encoders that write fields in field-number order (Envoy, grpc-go): after
    version_info and node. -1 if the bytes are not what that says."""
    try:
        i, n = 0, len(raw)
        if i < n and raw[i] == _TAG_VERSION:
            ln, i = _varint(raw, i + 1)
            i += ln
        if i < n and raw[i] == _TAG_NODE:
            ln, i = _varint(raw, i + 1)
            i += ln
        return i if i <= n else -1
    except IndexError:
        return -1


def _names_block(req: Any, raw: bytes) -> bytes | None:
    """The resource_names of a DiscoveryRequest as `raw` encodes them, when it
    encodes them in field order (see _names_start): re-encoded from the parsed
    request in C and checked against the raw bytes, not walked in Python."""
    start = _names_start(raw)
    if start < 0:
        return None
    names_only = discovery_pb2.DiscoveryRequest()
    names_only.CopyFrom(req)
    for f in ("version_info", "node", "type_url", "response_nonce", "error_detail", "resource_locators"):
        names_only.ClearField(f)
    block: bytes = names_only.SerializeToString()
    end = start + len(block)
    if end < len(raw) and raw[end] == _TAG_TYPE and raw.startswith(block, start):
        return block
    return None


def _names_digest(names: Iterable[str]) -> str:
    ordered = sorted(names)
    text = "\0".join(ordered) + "\0" if ordered else ""
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


class PushSlots:
    """A cap on concurrent sends of one kind (pushes, or first responses to new
    streams), as an `async with` gate: first come, first served, and O(1) per
    entry and exit however many wait (asyncio.Semaphore scans and removes from
    its waiter deque, O(waiters), which with 2,000 streams behind a cap of 100
    cost more than the pushes themselves). A freed slot is handed straight to
    the next waiter. The in-flight count is exported as a gauge read at scrape
    time; the highest count seen is kept for debugging and tests."""

    def __init__(self, limit: int, gauge: Any = None) -> None:
        if limit < 1:
            raise ValueError(f"a concurrency cap must be at least 1, not {limit}")
        self.limit = limit
        self.inflight = 0
        self.peak = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        if gauge is not None:
            gauge.set_function(lambda: self.inflight)

    async def __aenter__(self) -> PushSlots:
        if self.inflight < self.limit and not self._waiters:
            self.inflight += 1
            self.peak = max(self.peak, self.inflight)
            return self
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut  # __aexit__ of a holder hands its slot over (inflight unchanged)
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release()  # the slot arrived as we were cancelled: pass it on
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():  # cancelled waiters are skipped
                fut.set_result(None)
                return
        self.inflight -= 1

    def locked(self) -> bool:
        return self.inflight >= self.limit


class Stream:
    """One ADS stream (one Envoy)."""

    def __init__(self, server: XdsServer, delta: bool, context: grpc.aio.ServicerContext) -> None:
        self.server = server
        self.delta = delta
        self.context = context
        self.info: ConnectionInfo | None = None
        self.events: asyncio.Queue[object] = asyncio.Queue()
        self.pending: PushRequest | None = None
        self.state: MeshState = server.state()
        self._nonce = itertools.count(1)
        self._nonce_prefix = os.urandom(3).hex()
        # Per named watch: digest of subscribed names, for the SotW version.
        self._names_digest: dict[str, str] = {}
        # SotW: the names of the last request per type, as sent (cheap ACK check).
        self._last_names: dict[str, list[str]] = {}
        # SotW: per type, the encoded resource_names of the last request (bytes
        # shared between streams): an ACK that repeats them is handled from its
        # raw bytes, without decoding a thousand names.
        self._names_block: dict[str, bytes] = {}
        # SotW: the Resources last sent per type (shared objects, not copies).
        self._sent_res: dict[str, Resources] = {}
        self.closing = False
        self.task: asyncio.Task[Any] | None = None
        self.writing_since = 0.0
        self.recycle_at = 0.0
        self.stuck = False
        # Delta: digest of each type's subscription (names and wildcard).
        self._delta_sub: dict[str, str] = {}
        # Delta: clusters in the last CDS update, whose EDS must follow (warming).
        self._changed_clusters: set[str] = set()
        # Bounds the requests read but not yet handled (see MAX_QUEUED_REQUESTS).
        self._room = asyncio.Semaphore(MAX_QUEUED_REQUESTS)
        # Requests queued or being handled by the stream's task (see _reader).
        self._requests_open = 0

    # --- plumbing -----------------------------------------------------------

    @property
    def proxy(self) -> Proxy:
        assert self.info is not None
        return self.info.proxy

    def next_nonce(self) -> str:
        return f"{self._nonce_prefix}-{next(self._nonce)}"

    def request_push(self, req: PushRequest) -> None:
        """At most one push is pending per stream: a request that arrives while one
        waits (for a push slot, or behind a slow send) is merged into it, so a busy
        stream gets one push of the newest state, never a backlog."""
        if self.pending is None:
            self.pending = req
            self.events.put_nowait(_PUSH)
        else:
            self.pending = self.pending.merge(req)

    async def _write(self, data: bytes, type_url: str) -> None:
        # No timer per write: the server's watchdog cancels a stream whose write
        # has been blocked longer than the send timeout (a stuck client).
        assert self.info is not None
        self.writing_since = time.monotonic()
        try:
            await self.context.write(data)
        finally:
            self.writing_since = 0.0
        self.info.bytes_sent += len(data)
        self.server.count_sent(type_url, len(data))

    async def _reader(self, requests: AsyncIterator[bytes]) -> None:
        try:
            async for raw in requests:
                # A plain ACK (SotW or Delta: the answer to every response) is
                # handled right here when no earlier request is waiting or being
                # handled: it sends nothing, so it needs neither the queue nor a
                # task switch.
                if not self._requests_open and self.info is not None and not self.closing:
                    try:
                        if self._fast_delta_ack(raw) if self.delta else self._fast_sotw_ack(raw):
                            continue
                    except Exception:  # leave it to the full path, which reports errors
                        log.debug("fast ACK path failed", exc_info=True)
                await self._room.acquire()
                self._requests_open += 1
                self.events.put_nowait(raw)
        except (asyncio.CancelledError, grpc.aio.AioRpcError):
            pass
        except Exception as e:  # the client went away mid-read
            log.debug("stream reader ended: %s", e)
        finally:
            self.events.put_nowait(_CLOSE)

    async def run(self, requests: AsyncIterator[bytes]) -> None:
        self.task = asyncio.current_task()
        max_age = self.server.max_connection_age
        # Recycled after the maximum age, with jitter, so proxies rebalance.
        self.recycle_at = time.monotonic() + max_age * (0.9 + 0.2 * random.random()) if max_age else 0.0
        self.server.ensure_watchdog()
        self.server.live.add(self)
        reader = asyncio.create_task(self._reader(requests))
        try:
            await self._loop()
        except asyncio.CancelledError:
            if not self.stuck:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # the watchdog's cancel is handled: end the RPC normally
            log.warning("closing xDS stream %s: a send blocked for over %ss", self.info.conn_id if self.info else "?",
                        self.server.send_timeout)  # fmt: skip
            self.server.metrics.stream_errors.labels("DEADLINE_EXCEEDED").inc()
            self.context.set_code(grpc.StatusCode.DEADLINE_EXCEEDED)
            self.context.set_details(f"a send blocked for over {self.server.send_timeout}s")
        except StreamError as e:
            log.info("closing xDS stream %s: %s", self.info.conn_id if self.info else "?", e.message)
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
            if ev is _RECYCLE:
                log.info("recycling xDS stream %s after max connection age", self.info.conn_id if self.info else "?")
                return  # ends the stream with OK; the proxy reconnects (rebalancing)
            if ev is _CLOSE or self.closing:
                return
            if ev is _PUSH:
                if self.pending is None or self.info is None:
                    continue
                async with self.server.push_slots:
                    # Taken only now: what arrived while this stream waited for a
                    # slot was merged into it, so one push carries the newest state.
                    req, self.pending = self.pending, None
                    if req is not None and not self.closing:
                        await self._push(req)
                continue
            assert isinstance(ev, bytes)
            self._room.release()
            try:
                await self._on_request(ev)
            finally:
                self._requests_open -= 1

    # --- requests -----------------------------------------------------------

    def _parse(self, raw: bytes) -> Any:
        cls = discovery_pb2.DeltaDiscoveryRequest if self.delta else discovery_pb2.DiscoveryRequest
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
        metadata = json_format.MessageToDict(req.node.metadata) if req.node.HasField("metadata") else {}
        try:
            proxy = parse_proxy(req.node.id, metadata)
        except ProxyError as e:
            raise StreamError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
        peer = self.context.peer() or ""
        self.info = ConnectionInfo(self.server.new_conn_id(proxy), proxy, self.delta, peer)
        self.info.last_push_state = self.state.version
        self.server.register(self)

    def _fast_sotw_ack(self, raw: bytes) -> bool:
        """Handle a SotW ACK/NACK whose resource_names are byte-for-byte those of
        the previous request of its type (what Envoy sends after every response):
        only the few bytes around the names are decoded. False: not such a
        request; the caller decodes it in full."""
        if not self._names_block:
            return False
        start = _names_start(raw)
        if start < 0:
            return False
        n = len(raw)
        for t, block in self._names_block.items():
            end = start + len(block)
            if end >= n or raw[end] != _TAG_TYPE or not raw.startswith(block, start):
                continue
            try:
                req = discovery_pb2.DiscoveryRequest.FromString(raw[:start] + raw[end:])
            except DecodeError:
                return False
            if req.type_url != t or req.resource_names:
                continue
            w = self.info.watches.get(t) if self.info is not None else None
            if w is None or not req.response_nonce:
                return False
            self._sotw_answer(w, req, self._last_names.get(t, ()))
            return True
        return False

    def _fast_delta_ack(self, raw: bytes) -> bool:
        """Handle a Delta ACK/NACK that changes no subscription (the answer to
        every response): it sends nothing. False: anything else."""
        try:
            req = discovery_pb2.DeltaDiscoveryRequest.FromString(raw)
        except DecodeError:
            return False
        if (
            not req.response_nonce
            or req.resource_names_subscribe
            or req.resource_names_unsubscribe
            or req.initial_resource_versions
            or self.info is None
        ):
            return False
        w = self.info.watches.get(req.type_url)
        if w is None:
            return False
        self._delta_answer(w, req)
        return True

    async def _on_request(self, raw: bytes) -> None:
        if not self.delta and self.info is not None and self._fast_sotw_ack(raw):
            return
        req = self._parse(raw)
        if self.info is None:
            self._register(req)
        if not TypeUrl.known(req.type_url):
            raise StreamError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"unknown type_url {req.type_url!r}; served: {', '.join(TypeUrl.PUSH_ORDER)}",
            )
        if self.delta:
            await self._on_delta(req)
        else:
            await self._on_sotw(req, raw)

    def _record_nack(self, w: Watch, req: Any, version: str, names: Iterable[str]) -> None:
        w.nacks += 1
        w.last_nack = Nack(
            version=version,
            nonce=req.response_nonce,
            message=req.error_detail.message,
            code=req.error_detail.code,
            names=tuple(names),
            at=time.time(),
        )
        self.server.metrics.rejects.labels(TypeUrl.SHORT.get(w.type_url, "other")).inc()
        log.warning(
            "%s rejected %s version %s: %s",
            self.proxy.id,
            TypeUrl.SHORT.get(w.type_url),
            version,
            req.error_detail.message,
        )

    def _sotw_answer(self, w: Watch, req: Any, names: Iterable[str]) -> bool:
        """Record the ACK or NACK a SotW request carries; False if its nonce is
        stale (a newer response is on its way: the protocol says ignore it)."""
        if req.response_nonce != w.nonce_sent:
            return False
        if req.HasField("error_detail"):
            self._record_nack(w, req, w.version_sent, names)
        else:
            self._record_ack(w, req.version_info, req.response_nonce)
        return True

    def _delta_answer(self, w: Watch, req: Any) -> None:
        """Record the ACK or NACK a Delta request carries (by nonce)."""
        if req.HasField("error_detail"):
            self._record_nack(w, req, w.version_sent, [])
        elif req.response_nonce == w.nonce_sent:
            self._record_ack(w, w.version_sent, req.response_nonce)

    def _record_ack(self, w: Watch, version: str, nonce: str) -> None:
        w.acks += 1
        w.version_acked = version
        w.nonce_acked = nonce
        w.acked_at = time.monotonic()
        self.server.on_ack(self, w)

    async def _on_sotw(self, req: Any, raw: bytes = b"") -> None:
        assert self.info is not None
        t = req.type_url
        w = self.info.watches.get(t)
        first = w is None
        if w is None:
            w = self.info.watches[t] = Watch(t)
        if req.response_nonce and not self._sotw_answer(w, req, req.resource_names):
            return  # stale: a newer response is on its way; the protocol says ignore
        # The names as encoded, for recognising the ACKs that repeat them.
        block = _names_block(req, raw)
        if block is not None:
            self._names_block[t] = self.server.intern_block(block)
        else:
            self._names_block.pop(t, None)
        raw_names = list(req.resource_names)
        if req.response_nonce and not first and raw_names == self._last_names.get(t):
            return  # an ACK/NACK with the same subscription: nothing to send
        # Interned: a thousand proxies subscribed to the same names share one copy.
        raw_names = list(map(sys.intern, raw_names))
        self._last_names[t] = raw_names
        names = set(raw_names)
        old_wildcard, old_names = w.wildcard, w.names
        if t in TypeUrl.WILDCARD_TYPES:
            if "*" in names or (not names and not w.explicit):
                w.wildcard = True
            else:
                w.wildcard = False
                w.explicit = True
            names.discard("*")
        if names != w.names or t not in self._names_digest:
            self._names_digest[t] = self.server.names_digest(names)
        w.names = names
        changed = first or not req.response_nonce or names != old_names or w.wildcard != old_wildcard
        if first:
            async with self.server.initial_slots:
                await self._send_sotw(w, self.server.generate(self.state, self.proxy, t), force=True)
        elif changed:
            res = self.server.generate(self.state, self.proxy, t)
            await self._send_sotw(w, res, force=True)

    async def _send_sotw(self, w: Watch, res: Resources, *, force: bool, only: frozenset[str] | None = None) -> bool:
        """Send type `w.type_url`. Wildcard types always carry the full set; named
        types carry the subscribed resources (all when forced, else the changed).

        A full-set response is the same bytes for every proxy that has the same
        resources and subscription, so it is built once and shared (its nonce
        too: nonces need only differ between a stream's successive responses,
        and a shared one changes with the version)."""
        t = w.type_url
        prev = self._sent_res.get(t)
        shared: tuple[str, str, str] | None = None
        part: tuple[str, bytes] = ("", b"")
        if w.wildcard or (t in TypeUrl.WILDCARD_TYPES and not w.names):
            if not w.wildcard and not w.names:
                version = "empty"
            else:
                version = res.version
                if not force and version == w.version_sent:
                    return False
                shared = (t, version, "*")
        else:
            digest = self._names_digest.get(t, "")
            version = f"{res.version}-{digest}"
            if not force and (prev is res or (only is None and version == w.version_sent)):
                if only is None:
                    self._sent_res[t] = res
                return False  # the same resources were sent already
            if force or prev is None or t in TypeUrl.WILDCARD_TYPES:
                shared = (t, version, digest)
            else:
                # What changed since the last send: the same for every stream that
                # was sent the same content with the same subscription, so the
                # response (a 500 KB route table, say) is built once per push.
                pkey = (t, w.version_sent, version, only)
                got = self.server.shared_partial.get(pkey)
                if got is not None:
                    part = got
                else:
                    items: list[Built] = []
                    for n in w.names if only is None else (w.names & only):
                        b = res.get(n)
                        if b is None:
                            continue
                        old = prev.get(n)
                        if old is None or old.version != b.version:
                            items.append(b)
                    if items:
                        nonce = self.server.shared_nonce(version)
                        part = (nonce, sotw_response(version, t, nonce, b"".join(b.sotw_entry for b in items)))
                    else:
                        part = ("", b"")
                    self.server.shared_partial.put(pkey, part, len(part[1]))
                if not part[1]:
                    if only is None:
                        self._sent_res[t] = res
                    return False
        if shared is not None:
            nonce, data = self.server.shared_response(shared, res, version, w)
        else:
            nonce, data = part
        w.nonce_sent = nonce
        w.version_sent = version
        w.sends += 1
        w.sent_at = time.monotonic()
        w.state_version = self.state.version
        # After a partial (EDS-only) send the new resources are the truth for
        # every subscribed name too: the others are identical in content.
        self._sent_res[t] = res
        await self._write(data, t)
        return True

    def _sent_delta(self, w: Watch, res: Resources, nonce: str) -> None:
        w.nonce_sent = nonce
        w.version_sent = res.version
        w.sends += 1
        w.sent_at = time.monotonic()
        w.state_version = self.state.version

    # --- delta ----------------------------------------------------------------

    async def _on_delta(self, req: Any) -> None:
        assert self.info is not None
        t = req.type_url
        w = self.info.watches.get(t)
        first = w is None
        if w is None:
            w = self.info.watches[t] = Watch(t)
            w.sent.update({sys.intern(k): v for k, v in req.initial_resource_versions.items()})
        if req.response_nonce:
            self._delta_answer(w, req)
        subscribe = set(map(sys.intern, req.resource_names_subscribe))
        unsubscribe = set(req.resource_names_unsubscribe)
        if first and t in TypeUrl.WILDCARD_TYPES and not subscribe:
            w.wildcard = True
        if "*" in subscribe:
            w.wildcard = True
        if "*" in unsubscribe:
            w.wildcard = False
        subscribe.discard("*")
        unsubscribe.discard("*")
        new_names = subscribe - w.names
        w.names |= subscribe
        w.names -= unsubscribe
        for n in unsubscribe:
            w.sent.pop(n, None)
        if first or subscribe or unsubscribe:
            self._delta_sub[t] = self.server.names_digest(w.names) + ("*" if w.wildcard else "")
        if first:
            async with self.server.initial_slots:
                res = self.server.generate(self.state, self.proxy, t)
                await self._send_delta(w, res, report_missing=subscribe, always=True)
        elif subscribe:
            res = self.server.generate(self.state, self.proxy, t)
            # a name asked for again is sent again, even if the client has it
            force = new_names - set(req.initial_resource_versions)
            await self._send_delta(w, res, force=force, report_missing=subscribe)

    async def _send_delta(
        self,
        w: Watch,
        res: Resources,
        *,
        force: Iterable[str] = (),
        only: frozenset[str] | None = None,
        report_missing: Iterable[str] = (),
        always: bool = False,
    ) -> bool:
        t = w.type_url
        force = set(force)
        if only is None and not force and not always and not report_missing and res.version == w.version_sent:
            return False  # already reconciled with exactly these resources
        # The update is the same for every stream that holds the same content
        # (`w.version_sent`, or nothing yet on a first response: a reconnect
        # storm, a restart) with the same subscription: computed and encoded
        # once, bytes shared. The key is content versions, so proxies whose equal
        # resources were built separately (other namespaces) share too.
        shared_key: tuple[str, str, str, str] | None = None
        if only is None and not force:
            if always and not w.sent:
                shared_key = (t, "", res.version, self._delta_sub.get(t, ""))
            elif not always and not report_missing and w.version_sent:
                shared_key = (t, w.version_sent, res.version, self._delta_sub.get(t, ""))
        if shared_key is not None and (hit := self.server.shared_delta.get(shared_key)) is not None:
            changes, gone, nonce, data = hit
            w.sent.update(changes)
            for n in gone:
                w.sent.pop(n, None)
            if t == TypeUrl.CLUSTER:
                self._changed_clusters = {name for name, _ in changes}
            self._sent_delta(w, res, nonce)
            await self._write(data, t)
            return True
        index = res.index
        if w.wildcard:
            wanted: Iterable[str] = index.keys() if only is None else (n for n in only if n in index)
        else:
            wanted = w.names if only is None else (w.names & only)
        updates: list[Built] = []
        for n in wanted:
            b = index.get(n)
            if b is None:
                continue
            if n in force or w.sent.get(n) != b.version:
                updates.append(b)
        removed: list[str] = []
        if only is None:
            removed = [n for n in w.sent if n not in index]
        missing = [n for n in report_missing if n not in index and n not in removed]
        removed += missing
        if not updates and not removed and not always:
            if only is None:
                w.version_sent = res.version  # reconciled: nothing differed
            return False
        nonce = self.server.shared_nonce(res.version) if shared_key else self.next_nonce()
        data = delta_response(t, nonce, b"".join(b.delta_entry for b in updates), removed)
        for b in updates:
            w.sent[b.name] = b.version
        if t == TypeUrl.CLUSTER:
            self._changed_clusters = {b.name for b in updates}
        for n in removed:
            w.sent.pop(n, None)
        if shared_key is not None:
            entry = ([(b.name, b.version) for b in updates], removed, nonce, data)
            self.server.shared_delta.put(shared_key, entry, len(data))
        self._sent_delta(w, res, nonce)
        await self._write(data, t)
        return True

    # --- pushes ---------------------------------------------------------------

    async def _push(self, req: PushRequest) -> None:
        assert self.info is not None
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
            res = self.server.generate(self.state, self.proxy, t)
            only: frozenset[str] | None = None
            if not req.full and t == TypeUrl.ENDPOINT:
                only = self.server.eds_changed_names(res, req.eds_hosts)
                if not only:
                    continue
            if self.delta:
                force: set[str] = set()
                if t == TypeUrl.ENDPOINT and cds_changed:
                    force = set(self._changed_clusters)
                if t == TypeUrl.CLUSTER:
                    self._changed_clusters = set()
                sent = await self._send_delta(w, res, only=only, force=force)
            else:
                force_eds = t == TypeUrl.ENDPOINT and cds_changed
                sent = await self._send_sotw(w, res, force=force_eds, only=only)
            if t == TypeUrl.CLUSTER and sent:
                cds_changed = True
        self.info.last_push_state = self.state.version
        self.server.on_pushed(self, req)


class XdsServer:
    def __init__(
        self,
        generate: Generator,
        state: Callable[[], MeshState],
        *,
        metrics: XdsMetrics | None = None,
        send_timeout: float = 30.0,
        max_concurrent_pushes: int = 100,
        max_concurrent_initial: int = 50,
        max_connection_age: float = 0.0,
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
        self.streams: dict[str, Stream] = {}
        # Every running stream, registered (sent a node) or not: what a drain ends.
        self.live: set[Stream] = set()
        self.draining = False
        self._conn_seq = itertools.count(1)
        self.ack_listeners: list[Callable[[Stream, Watch], None]] = []
        self._watchdog: asyncio.Task[None] | None = None
        # Full-set SotW responses shared by proxies with the same resources.
        self._shared: SharedCache[tuple[str, bytes]] = SharedCache()
        self._shared_seq = 1
        self._blocks: SharedCache[bytes] = SharedCache()
        # SotW partial responses (what changed since a version), shared likewise.
        self.shared_partial: SharedCache[tuple[str, bytes]] = SharedCache()
        self._digests: SharedCache[str] = SharedCache()
        self._push_counters: dict[str, Any] = {}
        self._eds_names: SharedCache[frozenset[str]] = SharedCache(1024)
        # Delta updates shared by streams reconciled to the same resources.
        self.shared_delta: SharedCache[tuple[Any, ...]] = SharedCache()
        self._watchdog_grace = 3
        self.watchdog_interval = 1.0
        self.push_listeners: list[Callable[[Stream, PushRequest], None]] = []

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
                    stream.events.put_nowait(_RECYCLE)

    # --- hooks --------------------------------------------------------------

    def generate(self, state: MeshState, proxy: Proxy, type_url: str) -> Resources:
        try:
            return self._generate(state, proxy, type_url)
        except Exception as e:
            log.exception("translating %s for %s failed", TypeUrl.SHORT.get(type_url), proxy.id)
            raise StreamError(
                grpc.StatusCode.INTERNAL,
                f"translating {TypeUrl.SHORT.get(type_url)} for {proxy.id} failed: {e!r}",
            ) from e

    def new_conn_id(self, proxy: Proxy) -> str:
        return f"{proxy.id}-{next(self._conn_seq)}"

    def register(self, stream: Stream) -> None:
        assert stream.info is not None
        self.streams[stream.info.conn_id] = stream
        self.metrics.connections.labels("delta" if stream.delta else "sotw").inc()
        log.info("proxy connected: %s (%s)", stream.info.conn_id, "delta" if stream.delta else "sotw")

    def unregister(self, stream: Stream) -> None:
        assert stream.info is not None
        if self.streams.pop(stream.info.conn_id, None) is not None:
            self.metrics.connections.labels("delta" if stream.delta else "sotw").dec()
            log.info("proxy disconnected: %s", stream.info.conn_id)

    def on_ack(self, stream: Stream, w: Watch) -> None:
        for fn in self.ack_listeners:
            fn(stream, w)

    def on_pushed(self, stream: Stream, req: PushRequest) -> None:
        self.metrics.convergence.observe(time.monotonic() - req.start)
        for fn in self.push_listeners:
            fn(stream, req)

    def eds_changed_names(self, res: Resources, hosts: frozenset[str]) -> frozenset[str]:
        """The cluster names of `res` whose host is in `hosts`: computed once per
        (resources, hosts), as the proxies of one scope share both."""
        key = (res.version, hosts)
        hit = self._eds_names.get(key)
        if hit is not None:
            return hit
        by_host = res.names_by_host()
        out: set[str] = set()
        for h in hosts:
            out.update(by_host.get(h, ()))
        return self._eds_names.put(key, frozenset(out))

    def count_sent(self, type_url: str, size: int) -> None:
        counter = self._push_counters.get(type_url)
        if counter is None:
            counter = self._push_counters[type_url] = self.metrics.pushes.labels(TypeUrl.SHORT.get(type_url, "other"))
        counter.inc()
        self.metrics.bytes_sent.inc(size)

    def names_digest(self, names: AbstractSet[str]) -> str:
        """Digest of a subscription, computed once per distinct set of names
        (sorting a thousand names costs more than the rest of a first request)."""
        key = frozenset(names)
        hit = self._digests.get(key)
        if hit is None:
            hit = self._digests.put(key, _names_digest(key))
        return hit

    def intern_block(self, block: bytes) -> bytes:
        """One copy of each encoded name list: proxies of one scope share it."""
        hit = self._blocks.get(block)
        return hit if hit is not None else self._blocks.put(block, block, len(block))

    def shared_nonce(self, version: str) -> str:
        self._shared_seq += 1
        return f"v{self._shared_seq}-{version[:16]}"

    def shared_response(self, key: tuple[str, str, str], res: Resources, version: str, w: Watch) -> tuple[str, bytes]:
        """A full-set SotW response, built once per (type, content version,
        subscription): proxies whose resources were built separately but are
        equal (other namespaces, same services) share the bytes too."""
        hit = self._shared.get(key)
        if hit is not None:
            return hit
        t = key[0]
        if key[2] == "*":
            entries = res.joined()
        else:
            entries = b"".join(b.sotw_entry for n in sorted(w.names) if (b := res.get(n)) is not None)
        nonce = self.shared_nonce(version)
        data = sotw_response(version, t, nonce, entries)
        return self._shared.put(key, (nonce, data), len(data))

    # --- pushing --------------------------------------------------------------

    def push(self, req: PushRequest) -> None:
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
            stream.events.put_nowait(_CLOSE)
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
        await Stream(self, delta, context).run(requests)

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


with contextlib.suppress(Exception):  # pragma: no cover - tidy names in tracebacks
    Stream.__module__ = __name__
