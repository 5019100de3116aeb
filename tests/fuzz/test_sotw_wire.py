"""The SotW ACK fast path reads resource_names from raw bytes (xds/wire.py);
whatever the encoding (any field order, split repeated fields, extra bytes),
what it decides must agree with a full decode of the same bytes."""

from __future__ import annotations

import os

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st

from istiod_py.xds.wire import names_block, names_start, strip_names

Request = discovery_pb2.DiscoveryRequest
EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"

texts = st.text(max_size=20)
names = st.lists(st.one_of(st.sampled_from(["a", "b", "*", ""]), texts), max_size=6)


@st.composite
def encoded(draw: st.DrawFn) -> tuple[bytes, list[str]]:
    """A DiscoveryRequest encoded field by field in any order, its names maybe
    split in two runs; returns the bytes and the names in wire order."""
    ns = draw(names)
    cut = draw(st.integers(0, len(ns)))
    parts = [
        Request(version_info=draw(texts)),
        Request(type_url=draw(st.sampled_from([EDS, CDS, ""]))),
        Request(response_nonce=draw(texts)),
        Request(resource_names=ns[:cut]),
        Request(resource_names=ns[cut:]),
    ]
    if draw(st.booleans()):
        parts.append(Request(node={"id": draw(texts)}))
    if draw(st.booleans()):
        parts.append(Request(error_detail={"code": 3, "message": draw(texts)}))
    order = draw(st.permutations(range(len(parts))))
    # names keep their relative order: run 3 before run 4
    if order.index(3) > order.index(4):
        ns = ns[cut:] + ns[:cut]
    return b"".join(parts[i].SerializeToString() for i in order), ns


# Pure functions, microseconds an example: many more than the stream fuzzers.
@settings(max_examples=20_000 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 500)
@given(first=encoded(), second=encoded(), junk=st.binary(max_size=8))
def test_fast_path_agrees_with_a_full_decode(
    first: tuple[bytes, list[str]], second: tuple[bytes, list[str]], junk: bytes
) -> None:
    raw1, _ = first
    req1 = Request.FromString(raw1)
    block = names_block(req1, raw1)
    if block is not None:  # recorded: exactly the request's names, in order
        assert list(Request.FromString(block).resource_names) == list(req1.resource_names)
    else:
        block = Request(resource_names=req1.resource_names).SerializeToString()
    for raw2 in (second[0], second[0] + junk, raw1):
        start = names_start(raw2)
        if start < 0:
            continue
        try:
            rest = strip_names(raw2, start, block)
        except DecodeError:
            continue
        if rest is None:
            continue
        full = Request.FromString(raw2)
        # What the fast path sees is the full request but for its names...
        assert (rest.type_url, rest.response_nonce, rest.version_info) == (
            full.type_url,
            full.response_nonce,
            full.version_info,
        )
        assert rest.HasField("error_detail") == full.HasField("error_detail")
        # ...and it acts only when the rest has no names: then the names are the block's.
        if not rest.resource_names:
            assert list(full.resource_names) == list(req1.resource_names)
