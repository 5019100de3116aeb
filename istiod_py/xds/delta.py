"""The incremental protocol (DeltaAggregatedResources) on one stream.

A Delta request changes the subscription (subscribe/unsubscribe, wildcard by
"*"); a response carries only resources the client does not hold at their
current version, and the names it should drop. Per type the stream tracks what
the client holds (Watch.sent), seeded on reconnect from initial_resource_versions.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.message import DecodeError

from istiod_py.cache.resources import Built, Resources, delta_response

from .connection import Watch
from .metrics import metric_type
from .stream import Stream, StreamHost
from .types import TypeUrl


class DeltaStream(Stream):
    delta = True
    request_class = discovery_pb2.DeltaDiscoveryRequest

    def __init__(self, server: StreamHost, context: grpc.aio.ServicerContext) -> None:
        super().__init__(server, context)
        # Digest of each type's subscription (names and wildcard).
        self._sub: dict[str, str] = {}
        # Clusters in the last CDS update, whose EDS must follow (warming).
        self._changed_clusters: set[str] = set()

    def fast_ack(self, raw: bytes) -> bool:
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
        self._answer(w, req)
        return True

    def _answer(self, w: Watch, req: Any) -> None:
        """Record the ACK or NACK a Delta request carries (by nonce)."""
        if req.HasField("error_detail"):
            self.record_nack(w, req, w.version_sent, [])
        elif req.response_nonce == w.nonce_sent:
            self.record_ack(w, w.version_sent, req.response_nonce)
        else:
            m = self.server.metrics
            m.child(m.expired_nonce, metric_type(w.type_url)).inc()

    async def on_request(self, req: Any, raw: bytes) -> None:
        assert self.info is not None
        t = req.type_url
        w = self.info.watches.get(t)
        first = w is None
        if w is None:
            w = self.info.watches[t] = Watch(t)
            w.sent.update({sys.intern(k): v for k, v in req.initial_resource_versions.items()})
        if req.response_nonce:
            self._answer(w, req)
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
            self._sub[t] = self.server.sharing.names_digest(w.names) + ("*" if w.wildcard else "")
        if first:  # sent behind the initial-response gate once this request is dropped
            self.defer_first(
                t,
                lambda: self.send(
                    w, self.server.generate(self.state, self.proxy, t), report_missing=subscribe, always=True
                ),
            )
        elif subscribe:
            res = self.server.generate(self.state, self.proxy, t)
            # a name asked for again is sent again, even if the client has it
            force = new_names - set(req.initial_resource_versions)
            await self.send(w, res, force=force, report_missing=subscribe)

    async def push_type(self, w: Watch, res: Resources, only: frozenset[str] | None, cds_changed: bool) -> bool:
        force: set[str] = set()
        if w.type_url == TypeUrl.ENDPOINT and cds_changed:
            # Envoy re-warms the clusters of a CDS update: their endpoints follow.
            force = set(self._changed_clusters)
        if w.type_url == TypeUrl.CLUSTER:
            self._changed_clusters = set()
        return await self.send(w, res, only=only, force=force)

    async def send(
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
        sharing = self.server.sharing
        shared_key: tuple[str, str, str, str] | None = None
        if only is None and not force:
            if always and not w.sent:
                shared_key = (t, "", res.version, self._sub.get(t, ""))
            elif not always and not report_missing and w.version_sent:
                shared_key = (t, w.version_sent, res.version, self._sub.get(t, ""))
        if shared_key is not None and (hit := sharing.delta.get(shared_key)) is not None:
            changes, gone, nonce, data = hit
            w.sent.update(changes)
            for n in gone:
                w.sent.pop(n, None)
            if t == TypeUrl.CLUSTER:
                self._changed_clusters = {name for name, _ in changes}
            self.mark_sent(w, res.version, nonce, res)
            await self.write(data, t)
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
        nonce = sharing.nonce(res.version) if shared_key else self.next_nonce()
        data = delta_response(t, nonce, b"".join(b.delta_entry for b in updates), removed)
        for b in updates:
            w.sent[b.name] = b.version
        if t == TypeUrl.CLUSTER:
            self._changed_clusters = {b.name for b in updates}
        for n in removed:
            w.sent.pop(n, None)
        if shared_key is not None:
            entry = ([(b.name, b.version) for b in updates], removed, nonce, data)
            sharing.delta.put(shared_key, entry, len(data))
        self.mark_sent(w, res.version, nonce, res)
        await self.write(data, t)
        return True
