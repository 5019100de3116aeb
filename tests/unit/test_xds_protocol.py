"""SotW ADS protocol, driven by a real gRPC client against the real server in-process.

Each test starts a ControlPlane on a small config directory (see xds_client.py),
speaks StreamAggregatedResources to it and asserts what the xDS protocol
(envoyproxy.io xds_protocol) requires of a management server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from istiod_py.xds.types import TypeUrl
from tests.unit.xds_client import (
    CDS,
    EDS,
    LDS,
    RDS,
    ROUTING,
    SERVICES,
    SHORT,
    WORKLOADS,
    Mesh,
    SotwClient,
    StreamClosed,
    cluster,
    edit,
    make_node,
    names_of,
    running_mesh,
    write_config,
)

pytestmark = pytest.mark.timeout(20)

ADS_SOTW = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
ALL_CLUSTERS = sorted(
    [
        "BlackHoleCluster",
        "InboundPassthroughCluster",
        "PassthroughCluster",
        "inbound|9080||",
        cluster("productpage"),
        cluster("ratings"),
        cluster("reviews"),
        cluster("reviews", "v1"),
        cluster("reviews", "v2"),
    ]
)


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    write_config(tmp_path)
    async with running_mesh(tmp_path) as m:
        yield m


async def client(mesh: Mesh, **node: Any) -> SotwClient:
    return await SotwClient(mesh.channel, make_node(**node)).start()


async def subscribed(mesh: Mesh, *types: str, **node: Any) -> tuple[SotwClient, dict[str, str]]:
    """A client that subscribed to `types` (wildcard CDS/LDS, every EDS cluster,
    route "9080") and ACKed each; returns it and the version of each type."""
    c = await client(mesh, **node)
    versions = {}
    for t in types:
        names = _default_names(t)
        r = await c.subscribe(t, names)
        await c.ack(r, names)
        versions[t] = r.version_info
    await c.expect_none(0.1)
    return c, versions


def _default_names(t: str) -> list[str]:
    if t == EDS:
        return [
            cluster("productpage"),
            cluster("ratings"),
            cluster("reviews", "v1"),
            cluster("reviews", "v2"),
        ]
    if t == RDS:
        return ["9080"]
    return []


# --- stream errors ----------------------------------------------------------------


async def test_first_request_without_node_is_invalid_argument(mesh: Mesh) -> None:
    c = await SotwClient(mesh.channel, node=None).start()
    await c.send(CDS)
    closed = await c.wait_closed()
    assert closed.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "node" in (closed.details or "")
    await c.close()


async def test_bad_node_id_is_invalid_argument(mesh: Mesh) -> None:
    node = make_node()
    node.id = "reviews-v1"  # not TYPE~IP~NAME.NS~DOMAIN
    c = await SotwClient(mesh.channel, node).start()
    await c.send(CDS)
    closed = await c.wait_closed()
    assert closed.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "TYPE~IP~NAME.NAMESPACE~DOMAIN" in (closed.details or "")
    await c.close()


async def test_unknown_type_url_is_invalid_argument(mesh: Mesh) -> None:
    c = await client(mesh)
    await c.send("type.googleapis.com/envoy.config.nothing.v3.Nothing")
    closed = await c.wait_closed()
    assert closed.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown type_url" in (closed.details or "")
    await c.close()


async def test_garbage_bytes_are_invalid_argument_and_other_streams_keep_working(mesh: Mesh) -> None:
    healthy, versions = await subscribed(mesh, CDS)

    def identity(b: bytes) -> bytes:
        return b

    call = mesh.channel.stream_stream(ADS_SOTW, request_serializer=identity, response_deserializer=identity)()
    await call.write(b"\xff\xff\xff\xff")  # a truncated varint tag: not a DiscoveryRequest
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await asyncio.wait_for(call.read(), 2)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed DiscoveryRequest" in (err.value.details() or "")

    # The open stream is unaffected and a new stream is served.
    fresh = await client(mesh, ip="127.0.0.10", name="productpage-v1", labels={"app": "productpage"})
    r = await fresh.subscribe(CDS)
    assert r.resources
    edit(mesh.root / "services.yaml", SERVICES + _service("details"))
    r = await healthy.recv_type(CDS)
    assert r.version_info != versions[CDS]
    await healthy.close()
    await fresh.close()


def _service(name: str, port: int = 9080, port_name: str = "http") -> str:
    return (
        f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n"
        f"spec:\n  selector: {{app: {name}}}\n  ports: [{{name: {port_name}, port: {port}}}]\n"
    )


def _workload(name: str, address: str, app: str, version: str = "v1") -> str:
    return (
        f"---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
        f"metadata: {{name: {name}, namespace: default}}\n"
        f"spec: {{address: {address}, labels: {{app: {app}, version: {version}}}}}\n"
    )


# --- wildcard, ACK, NACK -------------------------------------------------------------


async def test_wildcard_cds_lds_by_empty_names_and_by_star(mesh: Mesh) -> None:
    legacy = await client(mesh)
    r_cds = await legacy.subscribe(CDS)  # empty names on the first request: legacy wildcard
    r_lds = await legacy.subscribe(LDS)
    assert names_of(r_cds) == ALL_CLUSTERS
    assert names_of(r_lds) == ["127.0.0.11_9080", "127.0.2.11_9080"]

    star = await client(mesh)
    s_cds = await star.subscribe(CDS, ["*"])
    s_lds = await star.subscribe(LDS, ["*"])
    assert names_of(s_cds) == ALL_CLUSTERS
    assert names_of(s_lds) == names_of(r_lds)
    # same content, same version, however the wildcard was asked for
    assert (s_cds.version_info, s_lds.version_info) == (r_cds.version_info, r_lds.version_info)
    await legacy.close()
    await star.close()


async def test_explicit_cds_names_then_star_returns_to_wildcard(mesh: Mesh) -> None:
    c = await client(mesh)
    r = await c.subscribe(CDS, [cluster("ratings")])
    assert names_of(r) == [cluster("ratings")]
    await c.send(CDS, ["*"], version=r.version_info, nonce=r.nonce)
    r2 = await c.recv_type(CDS)
    assert names_of(r2) == ALL_CLUSTERS
    await c.close()


async def test_ack_gets_no_response(mesh: Mesh) -> None:
    c = await client(mesh)
    for t, names in ((CDS, []), (EDS, [cluster("ratings")]), (LDS, []), (RDS, ["9080"])):
        r = await c.subscribe(t, names)
        assert r.nonce and r.version_info
        await c.ack(r, names)
        await c.expect_none(0.3)
    sync = await mesh.syncz()
    for short in ("CDS", "EDS", "LDS", "RDS"):
        w = sync["types"][short]
        assert w["version_acked"] == w["version_sent"]
        assert w["nonce_acked"] == w["nonce_sent"]
        assert (w["sends"], w["acks"], w["nacks"]) == (1, 1, 0)
    await c.close()


async def test_nack_is_recorded_and_not_resent(mesh: Mesh) -> None:
    c = await client(mesh)
    r = await c.subscribe(CDS)
    # Envoy rejects: it sends the nonce of the response, the last good version ("" at
    # start) and error_detail.
    await c.nack(r, acked_version="")
    await c.expect_none(1.0)  # no resend loop of a version the proxy rejected
    w = (await mesh.syncz())["types"]["CDS"]
    assert w["nacks"] == 1 and w["acks"] == 0
    assert w["last_nack"]["message"] == "bad config (test)"
    assert w["last_nack"]["nonce"] == r.nonce
    assert w["last_nack"]["version"] == r.version_info
    assert w["version_acked"] == ""
    await c.close()


async def test_nack_then_config_fix_pushes_new_version(mesh: Mesh) -> None:
    c = await client(mesh)
    r = await c.subscribe(CDS)
    await c.nack(r, acked_version="")
    await c.expect_none(0.3)
    # An unrelated-to-clusters reload with the same output must not resend either.
    edit(mesh.root / "routing.yaml", ROUTING + "\n# a comment only\n")
    await c.expect_none(0.5)
    edit(mesh.root / "services.yaml", SERVICES + _service("details"))
    fixed = await c.recv_type(CDS)
    assert fixed.version_info != r.version_info
    assert cluster("details") in names_of(fixed)
    await c.ack(fixed)
    await c.expect_none(0.3)
    w = (await mesh.syncz())["types"]["CDS"]
    assert w["version_acked"] == fixed.version_info
    assert w["last_nack"]["version"] == r.version_info  # the record of the rejection stays
    await c.close()


async def test_stale_nonce_is_ignored(mesh: Mesh) -> None:
    c = await client(mesh)
    r1 = await c.subscribe(RDS, ["9080"])
    await c.send(RDS, ["9080", "8080"], version=r1.version_info, nonce=r1.nonce)
    r2 = await c.recv_type(RDS)
    assert r2.nonce != r1.nonce
    # A request carrying the older nonce is stale: a newer response is already on
    # its way to the client. The server ignores it (no response, no state change).
    await c.send(RDS, ["9080"], version=r1.version_info, nonce=r1.nonce)
    await c.expect_none(0.5)
    w = (await mesh.syncz())["types"]["RDS"]
    assert w["subscribed"] == ["8080", "9080"]
    assert w["version_acked"] == r1.version_info
    assert w["nonce_sent"] == r2.nonce
    # The current nonce is honoured.
    await c.send(RDS, ["9080"], version=r2.version_info, nonce=r2.nonce)
    r3 = await c.recv_type(RDS)
    assert names_of(r3) == ["9080"]
    await c.close()


@pytest.mark.parametrize("node_every_request", [False, True])
@pytest.mark.parametrize(
    ("t", "names"),
    [(CDS, [cluster("ratings"), cluster("reviews")]), (LDS, ["127.0.0.11_9080"]), (CDS, [cluster("ratings")])],
)
async def test_explicit_cds_lds_ack_then_rerequest_is_never_closed(
    mesh: Mesh, t: str, names: list[str], node_every_request: bool
) -> None:
    """Issue 9: explicit CDS/LDS names, an ACK (the raw-bytes path), then the same
    and other re-requests with version and nonce: the stream stays open and is
    answered exactly when the subscription changes."""
    c = await client(mesh)
    if node_every_request:  # Envoy without set_node_on_first_message_only
        node = make_node()
        c._take_node = lambda req: req.node.CopyFrom(node)  # type: ignore[method-assign]
    r = await c.subscribe(t, names)
    assert names_of(r) == sorted(names)
    await c.ack(r, names)
    await c.expect_none(0.2)
    await c.send(t, names, version=r.version_info, nonce=r.nonce)  # the same again: an ACK
    await c.expect_none(0.2)
    # another subscription: one name fewer, or one more that does not exist
    other = names[:1] if len(names) > 1 else [*names, "not-in-the-mesh"]
    await c.send(t, other, version=r.version_info, nonce=r.nonce)
    r2 = await c.recv_type(t)
    assert names_of(r2) == names[:1]
    await c.ack(r2, other)
    await c.send(t, ["*"], version=r2.version_info, nonce=r2.nonce)  # back to wildcard
    r3 = await c.recv_type(t)
    assert len(names_of(r3)) >= len(names)
    await c.ack(r3, ["*"])
    await c.expect_none(0.2)
    assert c.closed is None
    w = (await mesh.syncz())["types"][SHORT[t]]
    assert w["nonce_acked"] == r3.nonce and w["nacks"] == 0
    await c.close()


@pytest.mark.parametrize("t", [CDS, EDS, LDS, RDS])
async def test_first_request_with_nonce_of_an_earlier_stream_is_answered(mesh: Mesh, t: str) -> None:
    """A client reconnecting may send the version and nonce it last had: on a new
    stream nothing is stale yet, so the request is answered (as istiod does), not
    ignored as a stale nonce (found by tests/fuzz/test_xds_fuzz.py)."""
    names = _default_names(t)
    old = await client(mesh)
    r = await old.subscribe(t, names)
    await old.close()
    c = await client(mesh)
    await c.send(t, names, version=r.version_info, nonce=r.nonce)
    again = await c.recv_type(t)
    assert names_of(again) == names_of(r)
    await c.ack(again, names)
    await c.expect_none(0.2)
    await c.close()


# --- named subscriptions (EDS, RDS) ----------------------------------------------------


async def test_newly_requested_name_is_sent_even_if_unchanged(mesh: Mesh) -> None:
    c = await client(mesh)
    r1 = await c.subscribe(EDS, [cluster("reviews")])
    assert names_of(r1) == [cluster("reviews")]
    await c.ack(r1, [cluster("reviews")])
    await c.send(EDS, [cluster("reviews"), cluster("ratings")], version=r1.version_info, nonce=r1.nonce)
    r2 = await c.recv_type(EDS)
    assert cluster("ratings") in names_of(r2)
    await c.close()


async def test_rds_named_subscription(mesh: Mesh) -> None:
    c = await client(mesh)
    r = await c.subscribe(RDS, ["9080"])
    assert names_of(r) == ["9080"]
    await c.ack(r, ["9080"])
    # A name that does not exist is simply not in the response (it may appear later).
    await c.send(RDS, ["9080", "7070"], version=r.version_info, nonce=r.nonce)
    r2 = await c.recv_type(RDS)
    assert names_of(r2) == ["9080"]
    await c.close()


async def test_unsubscribe_stops_pushes_and_resubscribe_sends_again(mesh: Mesh) -> None:
    c = await client(mesh)
    both = [cluster("reviews"), cluster("ratings")]
    r = await c.subscribe(EDS, both)
    assert names_of(r) == sorted(both)
    await c.ack(r, both)
    # unsubscribe ratings
    await c.send(EDS, [cluster("reviews")], version=r.version_info, nonce=r.nonce)
    r2 = await c.recv_type(EDS)
    assert cluster("ratings") not in names_of(r2)
    await c.ack(r2, [cluster("reviews")])
    await c.expect_none(0.2)
    # ratings' endpoints change: nothing for this client
    edit(mesh.root / "workloads.yaml", WORKLOADS + _workload("ratings-v2", "127.0.0.14", "ratings", "v2"))
    await c.expect_none(0.6)
    assert (await mesh.syncz())["types"]["EDS"]["subscribed"] == [cluster("reviews")]
    # resubscribe: ratings comes back, with its new endpoints
    await c.send(EDS, both, version=r2.version_info, nonce=r2.nonce)
    r3 = await c.recv_type(EDS)
    assert cluster("ratings") in names_of(r3)
    cla = next(
        TypeUrl.message_class(EDS).FromString(a.value)
        for a in r3.resources
        if TypeUrl.message_class(EDS).FromString(a.value).cluster_name == cluster("ratings")  # type: ignore[attr-defined]
    )
    addrs = sorted(
        lb.endpoint.address.socket_address.address
        for loc in cla.endpoints  # type: ignore[attr-defined]
        for lb in loc.lb_endpoints
    )
    assert addrs == ["127.0.0.13", "127.0.0.14"]
    # unsubscribe everything (empty names on a non-wildcard type): an empty answer
    await c.send(EDS, [], version=r3.version_info, nonce=r3.nonce)
    r4 = await c.recv_type(EDS)
    assert names_of(r4) == []
    await c.close()


# --- pushes ------------------------------------------------------------------------


async def test_push_order_cds_eds_lds_rds(mesh: Mesh) -> None:
    # productpage has no Sidecar: default scope, an outbound listener per service port.
    node: dict[str, Any] = {"ip": "127.0.0.10", "name": "productpage-v1", "labels": {"app": "productpage"}}
    c, before = await subscribed(mesh, CDS, EDS, LDS, RDS, **node)
    # One edit changing clusters (new services), listeners (new port 9091) and the
    # 9080 route config (a new virtual host).
    edit(
        mesh.root / "services.yaml",
        SERVICES + _service("details") + _service("metrics", 9091, "http-metrics"),
    )
    got = await c.drain(0.5)
    order = [SHORT[r.type_url] for r in got]
    assert order == ["CDS", "EDS", "LDS", "RDS"], order
    for r in got:
        assert r.version_info != before[r.type_url]
    assert cluster("details") in names_of(got[0])
    assert "127.0.0.1_9091" in names_of(got[2])
    await c.close()


async def test_every_cds_change_is_followed_by_eds(mesh: Mesh) -> None:
    c, _ = await subscribed(mesh, CDS, EDS)
    # DestinationRule edits: clusters change, the subscribed endpoints do not. Envoy
    # re-warms an updated EDS cluster and needs its ClusterLoadAssignment again.
    v3 = ROUTING.replace("  - {name: v2,", "  - {name: v3, labels: {version: v3}}\n  - {name: v2,")
    for text in (v3, ROUTING):
        edit(mesh.root / "routing.yaml", text)
        got = await c.drain(0.4)
        assert [SHORT[r.type_url] for r in got] == ["CDS", "EDS"]
        assert (cluster("reviews", "v3") in names_of(got[0])) == (text is v3)
        assert names_of(got[1]) == sorted(_default_names(EDS))
        for r in got:
            await c.ack(r, _default_names(r.type_url))
    await c.close()


async def test_pushes_to_proxies_in_the_same_state_are_the_same_bytes(mesh: Mesh) -> None:
    """Two proxies holding the same config get one shared encoding of each push
    (EDS-only and route changes alike): built once, not once per proxy."""
    a, _ = await subscribed(mesh, CDS, EDS, LDS, RDS, ip="127.0.0.10", name="productpage-v1", labels={"app": "x"})
    b, _ = await subscribed(mesh, CDS, EDS, LDS, RDS, ip="127.0.0.9", name="productpage-v2", labels={"app": "x"})
    edit(mesh.root / "workloads.yaml", WORKLOADS.replace("127.0.0.12", "127.0.0.22"))
    got_a, got_b = await a.drain(0.5), await b.drain(0.5)
    assert [SHORT[r.type_url] for r in got_a] == ["EDS"]
    assert [r.SerializeToString() for r in got_a] == [r.SerializeToString() for r in got_b]
    for c, got in ((a, got_a), (b, got_b)):
        await c.ack(got[0], _default_names(EDS))
    edit(mesh.root / "routing.yaml", ROUTING.replace("weight: 80", "weight: 70").replace("weight: 20", "weight: 30"))
    got_a, got_b = await a.drain(0.5), await b.drain(0.5)
    assert [SHORT[r.type_url] for r in got_a] == ["RDS"]
    assert [r.SerializeToString() for r in got_a] == [r.SerializeToString() for r in got_b]
    # and each stream ACKs its own copy: both in sync afterwards
    for c, got in ((a, got_a), (b, got_b)):
        await c.ack(got[0], _default_names(RDS))
        await c.expect_none(0.3)
    await a.close()
    await b.close()


async def test_endpoint_only_change_pushes_only_eds(mesh: Mesh) -> None:
    node: dict[str, Any] = {"ip": "127.0.0.10", "name": "productpage-v1", "labels": {"app": "productpage"}}
    c, before = await subscribed(mesh, CDS, EDS, LDS, RDS, **node)
    # Move reviews-v2 to a new address: a WorkloadEntry edit, endpoints only.
    edit(mesh.root / "workloads.yaml", WORKLOADS.replace("127.0.0.12", "127.0.0.22"))
    got = await c.drain(0.5)
    assert [SHORT[r.type_url] for r in got] == ["EDS"], [SHORT[r.type_url] for r in got]
    changed = names_of(got[0])
    assert set(changed) <= {cluster("reviews", "v2"), cluster("reviews")}
    assert cluster("reviews", "v2") in changed
    await c.ack(got[0], _default_names(EDS))
    # Add an instance: again EDS only.
    edit(
        mesh.root / "workloads.yaml",
        WORKLOADS.replace("127.0.0.12", "127.0.0.22") + _workload("ratings-v2", "127.0.0.14", "ratings"),
    )
    got = await c.drain(0.5)
    assert [SHORT[r.type_url] for r in got] == ["EDS"]
    assert names_of(got[0]) == [cluster("ratings")]
    # The pipeline classified it as endpoint-only (no full push was computed), and
    # every other type still stands at the version first sent.
    push = (await mesh.get_json("/debug/push_status"))["recent_pushes"][-1]
    assert push["full"] is False and push["eds_hosts"] == ["ratings.default.svc.cluster.local"]
    sync = await mesh.syncz("productpage-v1.default")
    for t in (CDS, LDS, RDS):
        assert sync["types"][SHORT[t]]["version_sent"] == before[t]
    await c.close()


# --- versions ------------------------------------------------------------------------


async def _versions(mesh: Mesh) -> dict[str, str]:
    c, versions = await subscribed(mesh, CDS, EDS, LDS, RDS)
    await c.close()
    return versions


async def test_same_content_same_version_on_reconnect_and_restart(tmp_path: Path) -> None:
    write_config(tmp_path)
    async with running_mesh(tmp_path) as m:
        first = await _versions(m)
        again = await _versions(m)
    assert first == again
    async with running_mesh(tmp_path) as m:
        assert await _versions(m) == first
        assert m.cp.pipeline is not None
    assert all(first.values())


async def test_stream_error_leaves_server_healthy(mesh: Mesh) -> None:
    bad = await SotwClient(mesh.channel, node=None).start()
    await bad.send(CDS)
    with pytest.raises(StreamClosed):
        await bad.recv()
    await bad.close()
    status, text = await mesh.get_text("/ready")
    assert status == 200 and text.strip() == "ready"
    assert await mesh.get_json("/debug/syncz") == []


# --- debug endpoints ---------------------------------------------------------------


async def test_debug_endpoints_answer_json(mesh: Mesh) -> None:
    c, versions = await subscribed(mesh, CDS, EDS, LDS, RDS)

    sync = await mesh.syncz()
    assert sync["transport"] == "sotw"
    assert sync["node_id"] == make_node().id
    assert set(sync["types"]) == {"CDS", "EDS", "LDS", "RDS"}
    assert sync["types"]["CDS"]["subscribed"] == "*"

    configz = await mesh.get_json("/debug/configz")
    kinds = {(x["kind"], x["name"]) for x in configz["configs"]}
    assert {("VirtualService", "reviews"), ("DestinationRule", "reviews"), ("Sidecar", "reviews-v1")} <= kinds
    assert configz["errors"] == []

    registry = await mesh.get_json("/debug/registryz")
    hosts = {s["hostname"]: s for s in registry}
    assert set(hosts) == {f"{s}.default.svc.cluster.local" for s in ("productpage", "reviews", "ratings")}
    assert sorted(e["address"] for e in hosts["reviews.default.svc.cluster.local"]["endpoints"]) == [
        "127.0.0.11",
        "127.0.0.12",
    ]

    # Envoy's admin ConfigDump shape (issue 15), holding what the proxy ACKed.
    dump = await mesh.get_json("/debug/config_dump?proxyID=reviews-v1.default")
    by_type = {c["@type"].rsplit(".", 1)[1]: c for c in dump["configs"]}
    assert set(by_type) == {"ClustersConfigDump", "EndpointsConfigDump", "ListenersConfigDump", "RoutesConfigDump"}
    assert by_type["ClustersConfigDump"]["version_info"] == versions[CDS]
    clusters = by_type["ClustersConfigDump"]["dynamic_active_clusters"]
    assert sorted(x["cluster"]["name"] for x in clusters) == ALL_CLUSTERS
    assert {x["version_info"] for x in clusters} == {versions[CDS]}
    assert [x["route_config"]["name"] for x in by_type["RoutesConfigDump"]["dynamic_route_configs"]] == ["9080"]
    # resources_sent counts what the last SotW response carried (it was 0 on SotW streams).
    assert sync["types"]["CDS"]["resources_sent"] == len(ALL_CLUSTERS)

    status, _ = await mesh.get_text("/debug/config_dump?proxyID=nobody.default")
    assert status == 404

    push = await mesh.get_json("/debug/push_status")
    assert push["connections"] == 1
    assert push["proxies"][0]["synced"] is True

    status, _ = await mesh.get_text("/ready")
    assert status == 200
    await c.close()


async def test_malformed_edit_keeps_last_good_config(mesh: Mesh) -> None:
    c, versions = await subscribed(mesh, CDS)
    edit(mesh.root / "routing.yaml", ROUTING.replace("weight: 20", "weight: twenty"))
    await c.expect_none(0.5)
    configz = await mesh.get_json("/debug/configz")
    assert any("weight" in e for e in configz["errors"])
    assert (await mesh.syncz())["types"]["CDS"]["version_sent"] == versions[CDS]
    await c.close()
