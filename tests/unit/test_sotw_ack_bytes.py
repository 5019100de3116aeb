"""The SotW ACK fast path finds resource_names in the raw request bytes; these
check it on the encodings it must accept and the ones it must refuse."""

from __future__ import annotations

from envoy.service.discovery.v3 import discovery_pb2

from istiod_py.xds.server import _names_span, _names_start

EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"


def encoded_names(names: list[str]) -> bytes:
    return discovery_pb2.DiscoveryRequest(resource_names=names).SerializeToString()


def test_span_covers_exactly_the_names_after_version_and_node() -> None:
    names = [f"outbound|8080||svc-{i}.ns.svc.cluster.local" for i in range(300)]
    req = discovery_pb2.DiscoveryRequest(version_info="v1", resource_names=names, type_url=EDS, response_nonce="n1")
    req.node.id = "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local"
    raw = req.SerializeToString()
    start, end = _names_span(raw)
    assert raw[start:end] == encoded_names(names)
    rest = discovery_pb2.DiscoveryRequest.FromString(raw[:start] + raw[end:])
    assert (rest.version_info, rest.type_url, rest.response_nonce, list(rest.resource_names)) == ("v1", EDS, "n1", [])


def test_no_names_is_an_empty_span_before_the_type() -> None:
    raw = discovery_pb2.DiscoveryRequest(type_url=EDS, response_nonce="n").SerializeToString()
    start, end = _names_span(raw)
    assert start == end == 0 and raw[start] == 0x22


def test_names_written_after_the_type_are_not_taken_for_an_ack() -> None:
    # Fields out of number order (legal protobuf): type_url, then a name.
    tail = discovery_pb2.DiscoveryRequest(type_url=EDS).SerializeToString()
    raw = tail + encoded_names(["a"])
    start, end = _names_span(raw)
    assert start == end == 0
    # the fast path then parses raw[:0] + raw[0:]: the stray name shows up and it gives up
    assert list(discovery_pb2.DiscoveryRequest.FromString(raw[:start] + raw[end:]).resource_names) == ["a"]


def test_truncated_bytes_give_no_span() -> None:
    raw = discovery_pb2.DiscoveryRequest(version_info="v" * 200, resource_names=["x" * 300]).SerializeToString()
    assert _names_span(raw[:100]) == (-1, -1)
    assert _names_start(raw[:1]) == -1
    assert _names_span(b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff") == (-1, -1)
