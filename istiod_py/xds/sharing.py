"""Bounded caches for what streams share: encoded responses, subscription
digests, interned name lists.

Sharing is what keeps push cost proportional to distinct configs rather than to
proxies, but a cache of encoded responses must not become the memory that grows
with every push. Entries are dropped oldest first once the cache holds more than
`max_entries` entries or `max_bytes` of payload; an entry only matters while a
push wave is being delivered, so the oldest are the least useful."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

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
