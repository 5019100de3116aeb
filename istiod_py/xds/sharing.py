"""Bounded caches for what streams share: encoded responses, subscription
digests, interned name lists.

Sharing is what keeps push cost proportional to distinct configs rather than to
proxies, but a cache of encoded responses must not become the memory that grows
with every push. Entries are dropped oldest first once the cache holds more than
`max_entries` entries or `max_bytes` of payload; an entry only matters while a
push wave is being delivered, so the oldest are the least useful."""

from __future__ import annotations

import sys
from collections.abc import Hashable, Iterable, Set
from typing import Any, Generic, TypeVar

from istiod_py.cache.resources import Resources, sotw_response
from istiod_py.model import Proxy

from .wire import names_digest

V = TypeVar("V")


class SharedCache(Generic[V]):
    __slots__ = ("_bytes", "_entries", "max_bytes", "max_entries")

    def __init__(self, max_entries: int = 4096, max_bytes: int = 64 * 2**20) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: dict[Hashable, tuple[V, int]] = {}
        self._bytes = 0

    def get(self, key: Hashable) -> V | None:
        hit = self._entries.get(key)
        return hit[0] if hit is not None else None

    def put(self, key: Hashable, value: V, size: int = 0) -> V:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
        self._entries[key] = (value, size)
        self._bytes += size
        while len(self._entries) > self.max_entries or (self._bytes > self.max_bytes and len(self._entries) > 1):
            oldest = next(iter(self._entries))
            self._bytes -= self._entries.pop(oldest)[1]
        return value

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes


class SharedResponses:
    """What streams share, by content version: encoded SotW responses (full sets
    and partial pushes), Delta updates, subscription digests, encoded name lists
    and the changed EDS names of a push. One per server."""

    def __init__(self) -> None:
        # Full-set SotW responses shared by proxies with the same resources.
        self._full: SharedCache[tuple[str, bytes]] = SharedCache()
        self._seq = 1
        self._blocks: SharedCache[bytes] = SharedCache()
        # SotW subscriptions (name list and set) by their encoded names.
        self._subs: SharedCache[tuple[list[str], set[str]]] = SharedCache(1024)
        # SotW partial responses (what changed since a version), shared likewise.
        self.partial: SharedCache[tuple[str, bytes]] = SharedCache()
        # Delta updates shared by streams reconciled to the same resources.
        self.delta: SharedCache[tuple[Any, ...]] = SharedCache()
        self._digests: SharedCache[str] = SharedCache()
        self._eds_names: SharedCache[frozenset[str]] = SharedCache(1024)
        # Parsed proxies by (node id, encoded node metadata): a reconnect skips parsing.
        self.proxies: SharedCache[Proxy] = SharedCache(8192, 16 * 2**20)

    def nonce(self, version: str) -> str:
        """A nonce for a shared response: nonces need only differ between one
        stream's successive responses, and a shared one changes with the version."""
        self._seq += 1
        return f"v{self._seq}-{version[:16]}"

    def full_response(
        self, key: tuple[str, str, str], res: Resources, version: str, names: Set[str]
    ) -> tuple[str, bytes]:
        """A full-set SotW response, built once per (type, content version,
        subscription): proxies whose resources were built separately but are
        equal (other namespaces, same services) share the bytes too."""
        hit = self._full.get(key)
        if hit is not None:
            return hit
        t = key[0]
        if key[2] == "*":
            entries = res.joined()
        else:
            entries = b"".join(b.sotw_entry for n in sorted(names) if (b := res.get(n)) is not None)
        nonce = self.nonce(version)
        data = sotw_response(version, t, nonce, entries)
        return self._full.put(key, (nonce, data), len(data))

    def names_digest(self, names: Set[str]) -> str:
        """Digest of a subscription, computed once per distinct set of names
        (sorting a thousand names costs more than the rest of a first request)."""
        key = frozenset(names)
        hit = self._digests.get(key)
        if hit is None:
            hit = self._digests.put(key, names_digest(key))
        return hit

    def intern_block(self, block: bytes) -> bytes:
        """One copy of each encoded name list: proxies of one scope share it."""
        hit = self._blocks.get(block)
        return hit if hit is not None else self._blocks.put(block, block, len(block))

    def subscription(self, block: bytes, names: Iterable[str]) -> tuple[list[str], set[str]]:
        """A SotW subscription as (names in request order, interned; their set),
        one copy per distinct encoded name list (`block`): 2,000 proxies asking
        for the same 5,000 clusters held 2,000 sets of ~500 KB each, half the
        server's memory at 5,000 services. Shared: callers never mutate them
        (SotW replaces a watch's names, see sotw.py)."""
        hit = self._subs.get(block)
        if hit is None:
            listed = list(map(sys.intern, names))
            hit = self._subs.put(block, (listed, set(listed)), len(block))
        return hit

    def eds_changed_names(self, res: Resources, hosts: frozenset[str]) -> frozenset[str]:
        """The cluster names of `res` whose host is in `hosts`: computed once per
        (resources, hosts), as the proxies of one scope share both."""
        key = (res.version, hosts)
        hit = self._eds_names.get(key)
        if hit is not None:
            return hit
        by_host = res.names_by_host()
        out: set[str] = set()
        # Walk the smaller side: a merged push may name many hosts while a
        # scoped proxy sees few (every proxy distinct: hosts x proxies otherwise).
        if len(hosts) <= len(by_host):
            for h in hosts:
                out.update(by_host.get(h, ()))
        else:
            for h, names in by_host.items():
                if h in hosts:
                    out.update(names)
        return self._eds_names.put(key, frozenset(out))
