"""The caches of shared responses stay bounded, oldest entries going first."""

from __future__ import annotations

from istiod_py.xds.sharing import SharedCache


def test_entries_beyond_the_count_drop_oldest_first() -> None:
    c: SharedCache[str] = SharedCache(max_entries=3)
    for k in "abcd":
        c.put(k, k.upper())
    assert len(c) == 3 and c.get("a") is None and c.get("d") == "D"


def test_payload_beyond_the_byte_bound_drops_oldest_first() -> None:
    c: SharedCache[bytes] = SharedCache(max_bytes=1000)
    for i in range(10):
        c.put(i, b"x" * 300, 300)
    assert c.nbytes <= 1000 and len(c) == 3
    assert [c.get(i) is not None for i in range(10)] == [False] * 7 + [True] * 3
    # one entry larger than the bound is still kept (it is being sent right now)
    c.put("big", b"y" * 5000, 5000)
    assert len(c) == 1 and c.get("big") is not None


def test_replacing_a_key_keeps_the_byte_count_right() -> None:
    c: SharedCache[bytes] = SharedCache(max_bytes=1000)
    c.put("k", b"a" * 600, 600)
    c.put("k", b"b" * 100, 100)
    assert c.nbytes == 100 and c.get("k") == b"b" * 100
