"""The state-of-the-world protocol (StreamAggregatedResources) on one stream.

A SotW request carries the whole subscription of its type; a response carries
every subscribed resource (wildcard types: every resource). ACKs repeat the
subscription, so they are recognised from their raw bytes (wire.py) before any
decoding of the names.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.message import DecodeError

from istiod_py.cache.resources import Built, Resources, sotw_response

from .connection import Watch
from .metrics import metric_type
from .stream import Stream, StreamHost
from .types import TypeUrl
from .wire import names_block, names_start, strip_names


class SotwStream(Stream):
    delta = False
    request_class = discovery_pb2.DiscoveryRequest

    def __init__(self, server: StreamHost, context: grpc.aio.ServicerContext) -> None:
        super().__init__(server, context)
        # Per named watch: digest of subscribed names, for the SotW version.
        self._names_digest: dict[str, str] = {}
        # The names of the last request per type, as sent (cheap ACK check).
        self._last_names: dict[str, list[str]] = {}
        # Per type, the encoded resource_names of the last request (bytes shared
        # between streams): an ACK that repeats them is handled from its raw
        # bytes, without decoding a thousand names.
        self._names_block: dict[str, bytes] = {}
        # The Resources last sent per type (shared objects, not copies).
        self._sent_res: dict[str, Resources] = {}

    def sent_resources(self, type_url: str) -> Resources | None:
        return self._sent_res.get(type_url)

    def fast_ack(self, raw: bytes) -> bool:
        """Handle a SotW ACK/NACK whose resource_names are byte-for-byte those of
        the previous request of its type (what Envoy sends after every response):
        only the few bytes around the names are decoded. False: not such a
        request; the caller decodes it in full."""
        if not self._names_block or self.info is None:
            return False
        start = names_start(raw)
        if start < 0:
            return False
        for t, block in self._names_block.items():
            try:
                req = strip_names(raw, start, block)
            except DecodeError:
                return False
            if req is None or req.type_url != t or req.resource_names:
                continue
            w = self.info.watches.get(t)
            if w is None or not req.response_nonce:
                return False
            self._answer(w, req, self._last_names.get(t, ()))
            return True
        return False

    def _answer(self, w: Watch, req: Any, names: Iterable[str]) -> bool:
        """Record the ACK or NACK a SotW request carries; False if its nonce is
        stale (a newer response is on its way: the protocol says ignore it)."""
        if req.response_nonce != w.nonce_sent:
            m = self.server.metrics
            m.child(m.expired_nonce, metric_type(w.type_url)).inc()
            return False
        if req.HasField("error_detail"):
            self.record_nack(w, req, w.version_sent, names)
        else:
            self.record_ack(w, req.version_info, req.response_nonce)
        return True

    async def on_request(self, req: Any, raw: bytes) -> None:
        assert self.info is not None
        t = req.type_url
        w = self.info.watches.get(t)
        first = w is None
        if w is None:
            w = self.info.watches[t] = Watch(t)
        # A nonce on the first request of a type is from an earlier stream (a
        # reconnect): nothing here to ACK or to be stale against, so answered
        # like any first request (as istiod does).
        if req.response_nonce and not first and not self._answer(w, req, req.resource_names):
            return  # stale: a newer response is on its way; the protocol says ignore
        # The names as encoded, for recognising the ACKs that repeat them.
        block = names_block(req, raw)
        shared: tuple[list[str], set[str]] | None = None
        if block is not None:
            block = self._names_block[t] = self.server.sharing.intern_block(block)
            # One list and set per distinct subscription, shared by its streams (memory).
            shared = self.server.sharing.subscription(block, req.resource_names)
        else:
            self._names_block.pop(t, None)
        raw_names = shared[0] if shared is not None else list(req.resource_names)
        if req.response_nonce and not first and raw_names == self._last_names.get(t):
            return  # an ACK/NACK with the same subscription: nothing to send
        if shared is None:
            # Interned: a thousand proxies subscribed to the same names share one copy.
            raw_names = list(map(sys.intern, raw_names))
        self._last_names[t] = raw_names
        names = shared[1] if shared is not None else set(raw_names)
        old_wildcard, old_names = w.wildcard, w.names
        if t in TypeUrl.WILDCARD_TYPES:
            if "*" in names or (not names and not w.explicit):
                w.wildcard = True
            else:
                w.wildcard = False
                w.explicit = True
            if "*" in names:
                names = names - {"*"}  # a new set: `names` may be shared
        if names != w.names or t not in self._names_digest:
            self._names_digest[t] = self.server.sharing.names_digest(names)
        w.names = names
        changed = first or not req.response_nonce or names != old_names or w.wildcard != old_wildcard
        if first:  # sent behind the initial-response gate once this request is dropped
            self.defer_first(t, lambda: self.send(w, self.server.generate(self.state, self.proxy, t), force=True))
        elif changed:
            res = self.server.generate(self.state, self.proxy, t)
            await self.send(w, res, force=True)

    async def push_type(self, w: Watch, res: Resources, only: frozenset[str] | None, cds_changed: bool) -> bool:
        # Envoy re-warms an updated EDS cluster: its endpoints follow every CDS change.
        force_eds = w.type_url == TypeUrl.ENDPOINT and cds_changed
        return await self.send(w, res, force=force_eds, only=only)

    async def send(self, w: Watch, res: Resources, *, force: bool, only: frozenset[str] | None = None) -> bool:
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
                part = self._partial(w, res, prev, version, only)
                if not part[1]:
                    if only is None:
                        self._sent_res[t] = res
                    return False
        if shared is not None:
            nonce, data = self.server.sharing.full_response(shared, res, version, w.names)
        else:
            nonce, data = part
        self.mark_sent(w, version, nonce, res)
        # After a partial (EDS-only) send the new resources are the truth for
        # every subscribed name too: the others are identical in content.
        self._sent_res[t] = res
        await self.write(data, t)
        return True

    def _partial(
        self, w: Watch, res: Resources, prev: Resources, version: str, only: frozenset[str] | None
    ) -> tuple[str, bytes]:
        """What changed since the last send, as (nonce, response), or ("", b"")
        if nothing did. The same for every stream that was sent the same content
        with the same subscription, so the response (a 500 KB route table, say)
        is built once per push."""
        t = w.type_url
        sharing = self.server.sharing
        pkey = (t, w.version_sent, version, only)
        got = sharing.partial.get(pkey)
        if got is not None:
            return got
        items: list[Built] = []
        for n in w.names if only is None else (w.names & only):
            b = res.get(n)
            if b is None:
                continue
            old = prev.get(n)
            if old is None or old.version != b.version:
                items.append(b)
        part: tuple[str, bytes] = ("", b"")
        if items:
            nonce = sharing.nonce(version)
            part = (nonce, sotw_response(version, t, nonce, b"".join(b.sotw_entry for b in items)))
        sharing.partial.put(pkey, part, len(part[1]))
        return part
