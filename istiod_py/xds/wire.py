"""Wire-level reading of DiscoveryRequests: the few bytes a SotW ACK fast path
needs, without decoding the request in full.

Envoy answers every response with a request that repeats the subscription; for
EDS that is a thousand cluster names. These helpers locate the encoded
resource_names inside the raw request so a stream can compare them, as bytes,
with the names of the previous request of the type (see sotw.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from envoy.service.discovery.v3 import discovery_pb2

# DiscoveryRequest wire tags: version_info (1), node (2), resource_names (3), type_url (4).
TAG_VERSION, TAG_NODE, TAG_NAME, TAG_TYPE = 0x0A, 0x12, 0x1A, 0x22

# Every DiscoveryRequest field but resource_names: cleared to encode the names alone.
_NOT_NAMES = ("version_info", "node", "type_url", "response_nonce", "error_detail", "resource_locators")


def varint(buf: bytes, i: int) -> tuple[int, int]:
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


def names_start(raw: bytes) -> int:
    """Where the resource_names of an encoded DiscoveryRequest would begin, for
    encoders that write fields in field-number order (Envoy, grpc-go): after
    version_info and node. -1 if the bytes are not what that says."""
    try:
        i, n = 0, len(raw)
        if i < n and raw[i] == TAG_VERSION:
            ln, i = varint(raw, i + 1)
            i += ln
        if i < n and raw[i] == TAG_NODE:
            ln, i = varint(raw, i + 1)
            i += ln
        return i if i <= n else -1
    except IndexError:
        return -1


def names_block(req: discovery_pb2.DiscoveryRequest, raw: bytes) -> bytes | None:
    """The resource_names of a DiscoveryRequest as `raw` encodes them, when it
    encodes them in field order (see names_start) with type_url right after:
    re-encoded from the parsed request in C and checked against the raw bytes,
    not walked in Python. None when the layout is anything else."""
    start = names_start(raw)
    if start < 0:
        return None
    count = len(req.resource_names)
    if count <= _WALK_NAMES:
        return _walk_names(raw, start, count)
    names_only = discovery_pb2.DiscoveryRequest()
    names_only.CopyFrom(req)
    for f in _NOT_NAMES:
        names_only.ClearField(f)
    block: bytes = names_only.SerializeToString()
    end = start + len(block)
    if end < len(raw) and raw[end] == TAG_TYPE and raw.startswith(block, start):
        return block
    return None


# Up to this many names the block is found by walking the raw fields in Python;
# past it, re-encoding them in C is cheaper (an EDS subscription of a thousand).
_WALK_NAMES = 16


def _walk_names(raw: bytes, start: int, count: int) -> bytes | None:
    """raw[start:end] if it is `count` resource_names fields followed by type_url."""
    try:
        i = start
        for _ in range(count):
            if raw[i] != TAG_NAME:
                return None
            ln, i = varint(raw, i + 1)
            i += ln
        if i < len(raw) and raw[i] == TAG_TYPE:
            return raw[start:i]
    except IndexError:
        pass
    return None


def strip_names(raw: bytes, start: int, block: bytes) -> discovery_pb2.DiscoveryRequest | None:
    """`raw` decoded without its resource_names, if they are exactly `block` at
    `start` (names_start(raw)) followed by type_url; None otherwise. Raises
    DecodeError if they are but the rest does not decode."""
    end = start + len(block)
    if end >= len(raw) or raw[end] != TAG_TYPE or not raw.startswith(block, start):
        return None
    return discovery_pb2.DiscoveryRequest.FromString(raw[:start] + raw[end:])


def names_digest(names: Iterable[str]) -> str:
    """A short digest of a set of names (order-free): part of SotW versions."""
    ordered = sorted(names)
    text = "\0".join(ordered) + "\0" if ordered else ""
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()
