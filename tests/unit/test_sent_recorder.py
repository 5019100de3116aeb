"""debug/sent.py: what a Delta proxy holds is matched lazily, with the same result as
matching at every ACK, and an ACK does no per-name work."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from envoy.config.endpoint.v3 import endpoint_pb2

from istiod_py.cache.resources import Built, Resources, build, resources_of
from istiod_py.debug.sent import MAX_SOURCES, SentRecorder
from istiod_py.xds.connection import Watch
from istiod_py.xds.types import TypeUrl

EDS = TypeUrl.ENDPOINT


def cla(name: str, port: int) -> Built:
    msg = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    msg.endpoints.add().lb_endpoints.add().endpoint.address.socket_address.port_value = port
    return build(name, EDS, msg)


class CountingResources(Resources):
    """Counts the names looked up in it: the work an ACK does."""

    lookups = 0

    def get(self, name: str) -> Built | None:
        CountingResources.lookups += 1
        return super().get(name)


def counting(*items: Built) -> Resources:
    res = resources_of({b.name: b for b in items})
    return CountingResources(res.parts)


class FakeXds:
    def __init__(self) -> None:
        self.ack_listeners: list[Any] = []
        self.streams: dict[str, Any] = {}


def delta_stream(conn_id: str) -> Any:
    return SimpleNamespace(delta=True, info=SimpleNamespace(conn_id=conn_id))


def ack(rec: SentRecorder, stream: Any, w: Watch, res: Resources, sent: dict[str, str], n: int) -> None:
    """The stream sent `res` (the proxy now holds `sent`) and the proxy ACKed it."""
    w.sent = dict(sent)
    w.sent_res = res
    w.version_acked = w.nonce_acked = f"v{n}"
    rec.on_ack(stream, w)


def test_delta_record_matches_bodies_lazily_across_many_acks() -> None:
    xds = FakeXds()
    rec = SentRecorder(xds)  # type: ignore[arg-type]
    stream = delta_stream("c1")
    xds.streams["c1"] = stream
    w = Watch(EDS)
    a1, b1 = cla("a", 1), cla("b", 1)
    ack(rec, stream, w, counting(a1, b1), {"a": a1.version, "b": b1.version}, 0)
    # Endpoint churn: only "b" changes; each send's Resources has both names.
    bs = [b1]
    for i in range(2, 2 + 3 * MAX_SOURCES):
        b = cla("b", i)
        bs.append(b)
        ack(rec, stream, w, counting(a1, b), {"a": a1.version, "b": b.version}, i)
    held = rec.of("c1")[EDS]
    assert held.resources == {"a": a1, "b": bs[-1]}
    assert held.unknown == {}
    assert held.version == f"v{1 + 3 * MAX_SOURCES}"


def test_delta_ack_does_no_per_name_work_and_keeps_few_sources() -> None:
    xds = FakeXds()
    rec = SentRecorder(xds)  # type: ignore[arg-type]
    stream = delta_stream("c1")
    xds.streams["c1"] = stream
    w = Watch(EDS)
    items = [cla(f"c{i}", 1) for i in range(200)]
    held_versions = {b.name: b.version for b in items}
    CountingResources.lookups = 0
    for i in range(1, MAX_SOURCES):
        ack(rec, stream, w, counting(*items), held_versions, i)
    assert CountingResources.lookups == 0  # no name looked up while ACKs only arrive
    held = rec.of("c1")[EDS]
    assert len(held.sources) == MAX_SOURCES - 1
    # The MAX_SOURCES-th distinct send: matched once (200 lookups), references dropped.
    ack(rec, stream, w, counting(*items), held_versions, MAX_SOURCES)
    assert CountingResources.lookups == len(items)
    held = rec.of("c1")[EDS]
    assert held.sources == () and held.versions is None
    assert held.resources == {b.name: b for b in items}


def test_delta_record_lists_a_version_it_never_saw_as_unknown() -> None:
    """A version the proxy claims (initial_resource_versions) but was never sent is
    listed, never given a body of another version."""
    xds = FakeXds()
    rec = SentRecorder(xds)  # type: ignore[arg-type]
    stream = delta_stream("c1")
    xds.streams["c1"] = stream
    w = Watch(EDS)
    a1 = cla("a", 1)
    ack(rec, stream, w, counting(a1), {"a": a1.version, "old": "0123456789abcdef"}, 1)
    held = rec.of("c1")[EDS]
    assert held.resources == {"a": a1}
    assert held.unknown == {"old": "0123456789abcdef"}


def test_a_body_from_an_older_send_survives_newer_sends_without_it() -> None:
    """EDS-only sends carry the changed names; a name the proxy kept from an
    earlier send keeps its body (from the older record)."""
    xds = FakeXds()
    rec = SentRecorder(xds)  # type: ignore[arg-type]
    stream = delta_stream("c1")
    xds.streams["c1"] = stream
    w = Watch(EDS)
    gone = cla("gone-from-later-resources", 7)
    ack(rec, stream, w, counting(gone), {gone.name: gone.version}, 1)
    last = None
    for i in range(2, 3 * MAX_SOURCES):
        last = cla("b", i)
        ack(rec, stream, w, counting(last), {gone.name: gone.version, "b": last.version}, i)
    assert last is not None
    held = rec.of("c1")[EDS]
    assert held.resources == {gone.name: gone, "b": last}
    assert held.unknown == {}
