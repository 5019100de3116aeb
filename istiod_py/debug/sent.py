"""What each connected proxy holds: the resources it was last sent and ACKed, per type.

/debug/config_dump must show what the proxy was given, not a regeneration from
the current state (which may differ: a NACKed push, a push still in flight). The
xDS server keeps protocol state only, so this record hangs off its public
`ack_listeners` hook: at each ACK it keeps a reference to what that ACK covers.

- SotW: the ACKed nonce is the last sent (the server ignores stale nonces), so the
  stream's last sent `Resources` (its `_sent_res`, read through `sent_resources`)
  filtered by the subscription is what the proxy holds.
- Delta: the watch's `sent` map (name -> content version) is what the proxy holds;
  the bodies come from the previous record or the resources of the stream's recent
  sends, matched by content version (a content hash), so a body is never a guess.

Cost: two references per SotW ACK (filtered when a dump is asked for); per Delta
ACK a copy of the name->version map (one C-level dict copy) and a few references.
The bodies are matched when a dump asks for them, or every `MAX_SOURCES`-th ACK
(so the Resources kept alive stay bounded): not a Python pass over every name on
every ACK. (It was one, plus a translation of the stream's state when a body was
not in the previous record: in an endpoint churn every proxy's ACK re-translated
a state the translator had already dropped.)
"""

from __future__ import annotations

import time
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from istiod_py.cache.resources import Built, Resources
from istiod_py.xds.types import TypeUrl

if TYPE_CHECKING:
    from istiod_py.xds.connection import Watch
    from istiod_py.xds.server import Stream, XdsServer


def sent_resources(stream: Stream, type_url: str) -> Resources | None:
    """The Resources a SotW stream last sent for `type_url` (None for Delta or unsent)."""
    return stream.sent_resources(type_url)


def sent_names(stream: Stream, w: Watch) -> list[str]:
    """Names of the resources the proxy was last sent for this watch (SotW or Delta)."""
    if stream.delta:
        return sorted(w.sent)
    res = sent_resources(stream, w.type_url)
    if res is None or not w.version_sent or w.version_sent == "empty":
        return []
    if w.wildcard:
        return sorted(res.index)
    return sorted(n for n in w.names if n in res.index)


# A Delta record keeps the Resources of at most this many sends unresolved; past
# it the record's bodies are matched (one pass) and the references dropped.
MAX_SOURCES = 4


@dataclass(slots=True)
class Held:
    """One type's ACKed resources on one connection."""

    version: str
    nonce: str
    at: float
    built: dict[str, Built] = field(default_factory=dict)
    # Delta names whose body could not be matched by version (content moved on
    # before the ACK was recorded): listed, never invented. Complete once
    # `resources` has been read (Delta records are matched lazily).
    unknown: dict[str, str] = field(default_factory=dict)
    # SotW: the sent Resources and the subscription (None: wildcard), filtered only
    # when a dump is asked for, so an ACK costs two references, not a copy.
    source: Resources | None = None
    names: AbstractSet[str] | None = None
    # Delta, until matched: the names and versions the proxy holds (a copy of the
    # watch's map at the ACK), where their bodies may be (the Resources of recent
    # sends, newest first) and the matched record they extend.
    versions: dict[str, str] | None = None
    sources: tuple[Resources, ...] = ()
    base: Held | None = None
    _filtered: dict[str, Built] | None = None

    @property
    def resources(self) -> dict[str, Built]:
        if self.versions is not None:
            self._match()
        if self.source is None:
            return self.built
        if self._filtered is None:
            index = self.source.index
            self._filtered = dict(index) if self.names is None else {n: index[n] for n in self.names if n in index}
        return self._filtered

    def _match(self) -> None:
        """Find each held name's body by content version: in the record this one
        extends, else in the Resources of the recent sends."""
        versions, sources, base = self.versions, self.sources, self.base
        assert versions is not None
        older = base.resources if base is not None else {}
        for name, version in versions.items():
            b = older.get(name)
            if b is None or b.version != version:
                b = None
                for src in sources:
                    c = src.get(name)
                    if c is not None and c.version == version:
                        b = c
                        break
            if b is not None:
                self.built[name] = b
            else:
                self.unknown[name] = version
        self.versions, self.sources, self.base = None, (), None


class SentRecorder:
    def __init__(self, xds: XdsServer) -> None:
        self.xds = xds
        # conn_id -> type_url -> Held
        self.held: dict[str, dict[str, Held]] = {}
        xds.ack_listeners.append(self.on_ack)

    def on_ack(self, stream: Stream, w: Watch) -> None:
        info = stream.info
        if info is None:
            return
        self._gc()
        per = self.held.setdefault(info.conn_id, {})
        prev = per.get(w.type_url)
        held = Held(w.version_acked, w.nonce_acked, time.time())
        if stream.delta:
            sent_res = w.sent_res if isinstance(w.sent_res, Resources) else None
            sources: tuple[Resources, ...] = ()
            base = prev
            if prev is not None and prev.versions is not None:
                # prev is unmatched: take over its sources rather than chain records.
                sources, base = prev.sources, prev.base
            if sent_res is not None and not any(s is sent_res for s in sources):
                sources = (sent_res, *sources)
            held.versions = dict(w.sent)
            held.sources = sources
            held.base = base
            if len(sources) >= MAX_SOURCES:
                held._match()
        else:
            # SotW replaces `w.names` with a new set on each subscription change (never
            # mutates it), so keeping the reference keeps the ACKed subscription.
            held.source = sent_resources(stream, w.type_url)
            held.names = None if w.wildcard else w.names
        per[w.type_url] = held

    def _gc(self) -> None:
        if len(self.held) > len(self.xds.streams) + 64:
            for cid in [c for c in self.held if c not in self.xds.streams]:
                del self.held[cid]

    def of(self, conn_id: str) -> dict[str, Held]:
        return self.held.get(conn_id, {})


SHORT_ORDER = [TypeUrl.CLUSTER, TypeUrl.ENDPOINT, TypeUrl.LISTENER, TypeUrl.ROUTE, TypeUrl.SECRET]
