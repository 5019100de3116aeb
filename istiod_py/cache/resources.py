"""Built resources: serialized once, shared by every proxy that gets them.

A `Built` carries the resource's bytes, a content hash used as its version, and the
bytes of the repeated-field entries that SotW and Delta responses are made of, so a
response for any proxy is a concatenation of ready bytes plus a small header.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf.message import Message

from istiod_py.xds.types import TypeUrl

# One-byte varints (0..127) as ready objects: most tags and lengths are small,
# and these helpers run for every resource and virtual host built.
_SMALL = tuple(bytes((i,)) for i in range(128))


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL[n]
    if n < 0x4000:
        return bytes((n & 0x7F | 0x80, n >> 7))
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


# Tags of length-delimited fields 1..15 (one byte each: (num << 3) | 2).
_TAG2 = tuple(bytes(((num << 3) | 2,)) for num in range(16))


def _field(num: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    n = len(payload)
    tag = _TAG2[num] if num < 16 else _varint((num << 3) | 2)
    return tag + (_SMALL[n] if n < 0x80 else _varint(n)) + payload


# Any.type_url (field 1) per type URL: a handful of values, encoded once.
_ANY_TYPE: dict[str, bytes] = {}


def encode_any(type_url: str, value: bytes) -> bytes:
    head = _ANY_TYPE.get(type_url)
    if head is None:
        head = _ANY_TYPE[type_url] = _field(1, type_url.encode())
    return head + _field(2, value)


@dataclass(frozen=True, slots=True)
class Built:
    name: str
    type_url: str
    body: bytes  # the resource, serialized deterministically
    version: str  # content hash: same content, same version, across restarts
    sotw_entry: bytes  # DiscoveryResponse.resources entry (field 2: Any)
    delta_entry: bytes  # DeltaDiscoveryResponse.resources entry (field 2: Resource)

    def message(self) -> Message:
        cls = TypeUrl.message_class(self.type_url)
        return cls.FromString(self.body)


def content_version(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=8).hexdigest()


def build(name: str, type_url: str, msg: Message) -> Built:
    body = msg.SerializeToString(deterministic=True)
    return build_from_bytes(name, type_url, body)


def build_from_bytes(name: str, type_url: str, body: bytes) -> Built:
    version = hashlib.blake2b(body, digest_size=8).hexdigest()  # content_version(body)
    # DiscoveryResponse.resources (field 2) and Resource.resource (field 2) hold
    # the same Any: encode it once and reuse the bytes in both entries. The
    # framing is written out here (tag, length, payload): this runs for every
    # resource built, and the helper calls were a fifth of its cost.
    head = _ANY_TYPE.get(type_url)
    if head is None:
        head = _ANY_TYPE[type_url] = _field(1, type_url.encode())
    n = len(body)
    any_bytes = b"".join((head, b"\x12", _SMALL[n] if n < 0x80 else _varint(n), body))
    n = len(any_bytes)
    sotw_entry = b"".join((b"\x12", _SMALL[n] if n < 0x80 else _varint(n), any_bytes))
    # envoy.service.discovery.v3.Resource: version=1, resource=2, name=3 (a
    # version is 16 hex digits: tag 0x0a, length 16)
    name_bytes = name.encode()
    n = len(name_bytes)
    resource_len = 1 + len(_SMALL[n] if n < 0x80 else _varint(n)) + n + 18 + len(sotw_entry)
    delta_entry = b"".join(
        (
            b"\x12",
            _SMALL[resource_len] if resource_len < 0x80 else _varint(resource_len),
            b"\x1a",
            _SMALL[n] if n < 0x80 else _varint(n),
            name_bytes,
            b"\x0a\x10",
            version.encode(),
            sotw_entry,
        )
    )
    return Built(name, type_url, body, version, sotw_entry, delta_entry)


def set_version(resources: Iterable[Built]) -> str:
    """The SotW version_info of a set: a hash of its members' names and versions."""
    # One string, one hash call: the same bytes as hashing "name\0version\0"
    # member by member, at a fraction of the calls (sets of ~1,000 per state).
    text = "".join([f"{b.name}\0{b.version}\0" for b in sorted(resources, key=_by_name)])
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _by_name(b: Built) -> str:
    return b.name


def sotw_response(version: str, type_url: str, nonce: str, entries: bytes) -> bytes:
    """envoy.service.discovery.v3.DiscoveryResponse, encoded by hand from ready entries.

    Fields: version_info=1, resources=2, type_url=4, nonce=5."""
    return _field(1, version.encode()) + entries + _field(4, type_url.encode()) + _field(5, nonce.encode())


def delta_response(
    type_url: str, nonce: str, entries: bytes, removed: Iterable[str], system_version: str = ""
) -> bytes:
    """envoy.service.discovery.v3.DeltaDiscoveryResponse.

    Fields: system_version_info=1, resources=2, type_url=4, nonce=5, removed_resources=6."""
    out = _field(1, system_version.encode()) if system_version else b""
    out += entries + _field(4, type_url.encode())
    for name in removed:
        out += _field(6, name.encode())
    return out + _field(5, nonce.encode())


class Part:
    """A group of built resources shared by every proxy that gets it (for example
    all outbound clusters of one Sidecar scope). Its set version and joined SotW
    bytes are computed once, so a proxy's cost is per part, not per resource.

    Provenance (never sent): `origins` maps a resource name to the Istio configs
    (`Kind/ns/name[:field]`) it was built from; names without an entry have the
    part's `default_origins` (what building the whole part read)."""

    __slots__ = ("_joined", "_version", "default_origins", "items", "origins")

    def __init__(self, items: dict[str, Built], origins: dict[str, frozenset[str]] | None = None) -> None:
        self.items = items
        self._version: str | None = None
        self._joined: bytes | None = None
        self.origins: dict[str, frozenset[str]] = origins if origins is not None else {}
        self.default_origins: frozenset[str] = frozenset()

    def set_default_origins(self, reads: frozenset[str]) -> None:
        """Called by PushContext.cached with what building this part read."""
        if not self.default_origins and self is not EMPTY_PART:
            self.default_origins = reads

    def origins_of(self, name: str) -> frozenset[str]:
        return self.origins.get(name, self.default_origins)

    @property
    def version(self) -> str:
        if self._version is None:
            self._version = set_version(self.items.values())
        return self._version

    @property
    def joined(self) -> bytes:
        if self._joined is None:
            self._joined = b"".join(b.sotw_entry for b in self.items.values())
        return self._joined

    def __len__(self) -> int:
        return len(self.items)


EMPTY_PART = Part({})


class Resources:
    """Everything of one type a proxy may get: a few shared parts, merged by name
    (later parts win)."""

    __slots__ = ("_by_host", "_index", "_version", "parts")

    def __init__(self, parts: tuple[Part, ...]) -> None:
        self.parts = parts
        self._version: str | None = None
        self._index: dict[str, Built] | None = None
        self._by_host: dict[str, list[str]] | None = None

    def names_by_host(self) -> dict[str, list[str]]:
        """Resource names grouped by the host after the last `|` (cluster names)."""
        if self._by_host is None:
            by_host: dict[str, list[str]] = {}
            for name in self.index:
                by_host.setdefault(name.rsplit("|", 1)[-1], []).append(name)
            self._by_host = by_host
        return self._by_host

    @property
    def index(self) -> dict[str, Built]:
        if self._index is None:
            if len(self.parts) == 1:
                self._index = self.parts[0].items
            else:
                merged: dict[str, Built] = {}
                for p in self.parts:
                    merged.update(p.items)
                self._index = merged
        return self._index

    def get(self, name: str) -> Built | None:
        return self.index.get(name)

    def origins_of(self, name: str, sub: str = "") -> frozenset[str]:
        """The Istio configs resource `name` (or its sub-resource `sub`, e.g. a
        virtual host of a route configuration) was built from; a sub-resource
        without its own record has its resource's."""
        for p in reversed(self.parts):
            if name in p.items:
                if sub:
                    hit = p.origins.get(f"{name}/{sub}")
                    if hit is not None:
                        return hit
                return p.origins_of(name)
        return frozenset()

    def __contains__(self, name: str) -> bool:
        return name in self.index

    def __len__(self) -> int:
        return len(self.index)

    @property
    def version(self) -> str:
        """Version of the whole set: from the parts' versions, O(parts)."""
        if self._version is None:
            if len(self.parts) == 1:
                self._version = self.parts[0].version
            else:
                h = hashlib.blake2b(digest_size=8)
                for p in self.parts:
                    h.update(p.version.encode())
                self._version = h.hexdigest()
        return self._version

    def joined(self) -> bytes:
        if len(self.parts) == 1:
            return self.parts[0].joined
        return b"".join(b.sotw_entry for b in self.index.values())


def resources_of(*parts: Part | dict[str, Built]) -> Resources:
    return Resources(tuple(p if isinstance(p, Part) else Part(p) for p in parts if len(p)))
