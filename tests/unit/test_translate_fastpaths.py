"""Connect-time fast paths of the translator (issue 18) give the same output as
the general code: hand-encoded protobuf framing, the mesh TLS context copied
from a prototype, string-only Struct filling, and the per-proxy scope kept
between calls."""

from __future__ import annotations

import random

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2, struct_pb2
from google.protobuf.internal import encoder

from istiod_py.cache.resources import _field, _varint, build, content_version
from istiod_py.model import parse_proxy
from istiod_py.translate.context import PushContext
from istiod_py.translate.security import mtls
from istiod_py.translate.structs import set_string_list, set_strings
from istiod_py.xds.types import TypeUrl
from tests.unit.test_mtls import state_of


def test_varint_and_field_match_protobuf_encoder() -> None:
    rng = random.Random(18)
    for n in [*range(0, 20_000), *(rng.getrandbits(40) for _ in range(2_000))]:
        assert _varint(n) == encoder._VarintBytes(n), n
    for num in (1, 2, 3, 15, 16, 17, 100, 2047, 2048):
        for size in (0, 1, 127, 128, 16_383, 16_384, 300_000):
            payload = b"x" * size
            assert _field(num, payload) == encoder.TagBytes(num, 2) + encoder._VarintBytes(size) + payload


@pytest.mark.parametrize("name_len", [0, 20, 126, 127, 128, 300])
@pytest.mark.parametrize("pad", [0, 50, 100, 20_000])
def test_built_entries_are_the_protobuf_encodings(name_len: int, pad: int) -> None:
    # Sizes around the one/two-byte length boundaries of every nested frame.
    c = cluster_pb2.Cluster(name="n" * name_len, alt_stat_name="s" * pad)
    b = build(c.name, TypeUrl.CLUSTER, c)
    assert b.version == content_version(b.body)
    # The framing as composed field by field before it was written out inline.
    name, version = _field(3, c.name.encode()), _field(1, b.version.encode())
    assert b.sotw_entry == _field(2, _field(1, TypeUrl.CLUSTER.encode()) + _field(2, b.body))
    assert b.delta_entry == _field(2, name + version + b.sotw_entry)
    any_msg = any_pb2.Any(type_url=TypeUrl.CLUSTER, value=c.SerializeToString(deterministic=True))
    if b.body:  # (an empty resource keeps its explicit empty value, which protobuf would omit)
        sotw = discovery_pb2.DiscoveryResponse(resources=[any_msg]).SerializeToString(deterministic=True)
        assert b.sotw_entry == sotw
    res = discovery_pb2.Resource(name=c.name, version=b.version, resource=any_msg)
    # The Resource is written name first (field order is free on the wire): compare parsed.
    assert discovery_pb2.DeltaDiscoveryResponse.FromString(b.delta_entry) == discovery_pb2.DeltaDiscoveryResponse(
        resources=[res]
    )


def _slow_common(alpn: tuple[str, ...], sans: tuple[str, ...]) -> bytes:
    from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2

    common = tls_pb2.CommonTlsContext(tls_params=mtls._tls_params(), alpn_protocols=list(alpn))
    common.tls_certificate_sds_secret_configs.add(name=mtls.WORKLOAD_SECRET, sds_config=mtls.sds_config())
    combined = common.combined_validation_context
    combined.default_validation_context.SetInParent()
    for san in sans:
        m = combined.default_validation_context.match_typed_subject_alt_names.add()
        m.san_type = common_pb2.SubjectAltNameMatcher.URI
        m.matcher.exact = san
    combined.validation_context_sds_secret_config.name = mtls.ROOT_SECRET
    combined.validation_context_sds_secret_config.sds_config.CopyFrom(mtls.sds_config())
    return common.SerializeToString(deterministic=True)


def test_mesh_tls_context_from_prototype_equals_built_whole() -> None:
    cases = [
        (mtls.ALPN_IN_MESH, ()),
        (mtls.ALPN_IN_MESH, ("spiffe://cluster.local/ns/a/sa/x",)),
        (mtls.ALPN_IN_MESH_H2, ("spiffe://cluster.local/ns/a/sa/x", "spiffe://td2/ns/a/sa/y")),
        (mtls.INBOUND_HTTP_ALPN, ()),
    ]
    seen = set()
    for alpn, sans in cases * 2:  # twice: a prototype is never changed by a copy's SANs
        got = mtls.mesh_common_tls_context(alpn, sans).SerializeToString(deterministic=True)
        assert got == _slow_common(alpn, sans)
        seen.add(got)
    assert len(seen) == len(cases)  # different ALPN or SANs, different bytes


def test_struct_helpers_equal_update() -> None:
    values = {"workload": "w;ns;app;;Kubernetes", "namespace": "ns", "": "empty key", "z": ""}
    a, b = struct_pb2.Struct(), struct_pb2.Struct()
    a.update(values)
    set_strings(b, values)
    assert a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)
    items = [{"host": "a.b.svc.cluster.local", "name": "a", "namespace": "b"}, {"host": "h", "name": "h"}]
    a, b = struct_pb2.Struct(), struct_pb2.Struct()
    a.update({"services": items})
    b.update({"services": [{"stale": "x"}]})
    set_string_list(b, "services", items)
    assert a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)


def test_sidecar_scope_kept_per_proxy_object() -> None:
    ctx = PushContext(state_of())
    md = {"INTERCEPTION_MODE": "NONE"}
    p1 = parse_proxy("sidecar~10.0.0.1~a.ns1~ns1.svc.cluster.local", {**md, "NAMESPACE": "ns1"})
    p2 = parse_proxy("sidecar~10.0.0.2~b.ns2~ns2.svc.cluster.local", {**md, "NAMESPACE": "ns2"})
    s1 = ctx.sidecar_scope(p1)
    s2 = ctx.sidecar_scope(p2)
    assert s1.key != s2.key  # namespaces differ: the last proxy's scope is not reused
    assert ctx.sidecar_scope(p1) is s1
    assert ctx.sidecar_scope(p2) is s2
    assert ctx.sidecar_scope(p2) is s2
