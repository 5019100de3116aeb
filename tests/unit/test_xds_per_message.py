"""Per-message shortcuts of the ADS path give the same answers as the long way:
the SotW names block found by walking raw fields, cached metric children, and push
attribution's triggers computed once per push wave."""

from __future__ import annotations

from envoy.service.discovery.v3 import discovery_pb2

from istiod_py.model import MeshState
from istiod_py.xds import wire
from istiod_py.xds.attribution import PushAttribution
from istiod_py.xds.connection import PushRequest
from istiod_py.xds.metrics import XdsMetrics


def reencoded_names(req: discovery_pb2.DiscoveryRequest) -> bytes:
    only = discovery_pb2.DiscoveryRequest(resource_names=req.resource_names)
    return only.SerializeToString()


def test_names_block_walked_or_reencoded_is_the_same_bytes() -> None:
    for n in (0, 1, 4, wire._WALK_NAMES, wire._WALK_NAMES + 1, 300):
        for nonce in ("", "n-1"):
            req = discovery_pb2.DiscoveryRequest(
                version_info="v1",
                type_url="type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
                response_nonce=nonce,
                resource_names=[
                    f"outbound|{9000 + i}||svc-{i}.ns-{i}.svc.cluster.local" * (1 + i % 9) for i in range(n)
                ],
            )
            req.node.id = "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local"
            raw = req.SerializeToString()
            assert wire.names_block(req, raw) == reencoded_names(req), n


def test_names_block_refuses_names_after_type_url() -> None:
    """Fields out of order (names after type_url): no block, so no ACK fast path."""
    head = discovery_pb2.DiscoveryRequest(resource_names=["a"]).SerializeToString()
    tail = discovery_pb2.DiscoveryRequest(type_url="t", resource_names=["b"])
    raw = head + discovery_pb2.DiscoveryRequest(type_url="t").SerializeToString()
    raw += discovery_pb2.DiscoveryRequest(resource_names=["b"]).SerializeToString()
    req = discovery_pb2.DiscoveryRequest.FromString(raw)
    assert list(req.resource_names) == ["a", "b"] and tail.type_url == req.type_url
    assert wire.names_block(req, raw) is None


def test_metric_children_are_cached_and_count() -> None:
    m = XdsMetrics()
    a = m.child(m.expired_nonce, "eds")
    assert m.child(m.expired_nonce, "eds") is a
    assert m.child(m.expired_nonce, "cds") is not a
    a.inc()
    m.child(m.expired_nonce, "eds").inc()
    assert m.expired_nonce.value("eds") == 2.0 and m.expired_nonce.value("cds") == 0.0


class _Info:
    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id
        self.bytes_sent = 0
        self.last_push_state = 0


class _Stream:
    def __init__(self, conn_id: str, state: MeshState) -> None:
        self.info = _Info(conn_id)
        self.state = state
        self.push_cost = (0.0, 0.0)
        self.server = None


def test_attribution_triggers_are_computed_once_per_wave() -> None:
    att = PushAttribution()
    s0 = MeshState(1, {}, {}, {})
    streams = [_Stream(f"c{i}", s0) for i in range(50)]
    for s in streams:
        att.on_registered(s)  # type: ignore[arg-type]
    s1 = MeshState(2, {}, {}, {})
    req = PushRequest(s1, False, frozenset({"a.ns.svc.cluster.local"}), "endpoints")
    att.on_push(req)
    calls = 0
    real = att._triggers

    class Counting(dict):  # type: ignore[type-arg]
        def items(self):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            return real.items()

    att._triggers = Counting(real)  # type: ignore[assignment]
    for s in streams:
        s.info.bytes_sent += 100
        att.on_pushed(s, req)  # type: ignore[arg-type]
    assert calls == 1
    rec = att.records[-1]
    assert rec.triggers == ("endpoints:a.ns.svc.cluster.local",)
    assert rec.proxies == 50 and rec.bytes == 5000


def test_eds_changed_names_same_whichever_side_is_walked() -> None:
    from envoy.config.endpoint.v3 import endpoint_pb2

    from istiod_py.cache.resources import build, resources_of
    from istiod_py.xds.sharing import SharedResponses
    from istiod_py.xds.types import TypeUrl

    names = [f"outbound|{p}|{s}|h{i}.ns.svc.cluster.local" for i in range(5) for p in (80, 90) for s in ("", "v1")]
    res = resources_of(
        {n: build(n, TypeUrl.ENDPOINT, endpoint_pb2.ClusterLoadAssignment(cluster_name=n)) for n in names}
    )
    few = frozenset({"h1.ns.svc.cluster.local", "other.svc"})
    many = frozenset({"h1.ns.svc.cluster.local", "h3.ns.svc.cluster.local"} | {f"x{i}" for i in range(50)})
    expect_few = frozenset(n for n in names if n.endswith("|h1.ns.svc.cluster.local"))
    expect_many = frozenset(n for n in names if n.endswith(("|h1.ns.svc.cluster.local", "|h3.ns.svc.cluster.local")))
    assert SharedResponses().eds_changed_names(res, few) == expect_few
    assert SharedResponses().eds_changed_names(res, many) == expect_many
    assert len(expect_many) == 8
