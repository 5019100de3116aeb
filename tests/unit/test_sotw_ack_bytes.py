"""The SotW ACK fast path finds resource_names in the raw request bytes; these
check it on the encodings it must accept and the ones it must refuse."""

from __future__ import annotations

from envoy.service.discovery.v3 import discovery_pb2

from istiod_py.xds.wire import names_block as _names_block
from istiod_py.xds.wire import names_start as _names_start

EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
Request = discovery_pb2.DiscoveryRequest


def block_of(raw: bytes) -> bytes | None:
    return _names_block(Request.FromString(raw), raw)


def test_block_is_exactly_the_names_after_version_and_node() -> None:
    names = [f"outbound|8080||svc-{i}.ns.svc.cluster.local" for i in range(300)]
    req = Request(version_info="v1", resource_names=names, type_url=EDS, response_nonce="n1")
    req.node.id = "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local"
    req.error_detail.message = "rejected outbound|8080||svc-1.ns.svc.cluster.local"
    raw = req.SerializeToString()
    block = block_of(raw)
    start = _names_start(raw)
    assert block is not None and raw[start : start + len(block)] == block
    assert list(Request.FromString(block).resource_names) == names
    rest = Request.FromString(raw[:start] + raw[start + len(block) :])
    assert (rest.version_info, rest.type_url, rest.response_nonce, list(rest.resource_names)) == ("v1", EDS, "n1", [])


def test_no_names_is_an_empty_block() -> None:
    assert block_of(Request(type_url=EDS, response_nonce="n").SerializeToString()) == b""


def test_names_written_out_of_field_order_have_no_block() -> None:
    # Legal protobuf, but not the layout the fast path relies on.
    raw = Request(type_url=EDS).SerializeToString() + Request(resource_names=["a"]).SerializeToString()
    assert block_of(raw) is None
    raw = Request(resource_names=["a"]).SerializeToString() + Request(version_info="v").SerializeToString()
    assert block_of(raw + Request(type_url=EDS).SerializeToString()) is None


def test_truncated_or_garbled_heads_have_no_start() -> None:
    raw = Request(version_info="v" * 200, resource_names=["x" * 300]).SerializeToString()
    assert _names_start(raw[:100]) == -1
    assert _names_start(raw[:1]) == -1
    assert _names_start(b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff") == -1
