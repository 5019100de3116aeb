"""Delta (incremental) ADS protocol, driven by a real gRPC client against the real
server in-process: wildcard and named subscriptions, removals, reconnect with
initial_resource_versions, per-resource content versions, ACK and NACK."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from envoy.service.discovery.v3 import discovery_pb2

from istiod_py.cache.resources import content_version
from tests.unit.xds_client import (
    CDS,
    EDS,
    LDS,
    RDS,
    ROUTING,
    SERVICES,
    SHORT,
    WORKLOADS,
    DeltaClient,
    Mesh,
    cluster,
    delta_versions,
    edit,
    make_node,
    running_mesh,
    write_config,
)

pytestmark = pytest.mark.timeout(20)

ALL_CLUSTERS = {
    "BlackHoleCluster",
    "InboundPassthroughCluster",
    "PassthroughCluster",
    "inbound|9080||",
    cluster("productpage"),
    cluster("ratings"),
    cluster("reviews"),
    cluster("reviews", "v1"),
    cluster("reviews", "v2"),
}
RATINGS_WE2 = (
    "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
    "metadata: {name: ratings-v2, namespace: default}\n"
    "spec: {address: 127.0.0.14, labels: {app: ratings, version: v2}}\n"
)


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    write_config(tmp_path)
    async with running_mesh(tmp_path) as m:
        yield m


async def client(mesh: Mesh) -> DeltaClient:
    return await DeltaClient(mesh.channel, make_node()).start()


async def request(
    c: DeltaClient, type_url: str, subscribe: list[str] | None = None, **kw: object
) -> discovery_pb2.DeltaDiscoveryResponse:
    await c.send(type_url, subscribe or [], **kw)  # type: ignore[arg-type]
    return await c.recv_type(type_url)


def addresses(resp: discovery_pb2.DeltaDiscoveryResponse, name: str) -> list[str]:
    from envoy.config.endpoint.v3 import endpoint_pb2

    for r in resp.resources:
        if r.name == name:
            cla = endpoint_pb2.ClusterLoadAssignment.FromString(r.resource.value)
            return sorted(
                lb.endpoint.address.socket_address.address for loc in cla.endpoints for lb in loc.lb_endpoints
            )
    raise AssertionError(f"{name} not in response")


async def test_initial_wildcard_and_versions_are_content_hashes(mesh: Mesh) -> None:
    c = await client(mesh)
    cds = await request(c, CDS)  # first request, no names: wildcard
    assert set(delta_versions(cds)) == ALL_CLUSTERS
    assert list(cds.removed_resources) == []
    for r in cds.resources:
        assert r.resource.type_url == CDS
        assert r.version == content_version(r.resource.value)
    lds = await request(c, LDS, ["*"])
    assert set(delta_versions(lds)) == {"127.0.0.11_9080", "127.0.2.11_9080"}
    for r in lds.resources:
        assert r.version == content_version(r.resource.value)
    await c.ack(cds)
    await c.ack(lds)
    await c.expect_none(0.3)
    sync = await mesh.syncz()
    assert sync["transport"] == "delta"
    assert sync["types"]["CDS"]["subscribed"] == "*"
    assert sync["types"]["CDS"]["resources_sent"] == len(ALL_CLUSTERS)
    assert sync["types"]["CDS"]["acks"] == 1
    await c.close()


async def test_same_resource_same_version_across_streams(mesh: Mesh) -> None:
    a, b = await client(mesh), await client(mesh)
    va = delta_versions(await request(a, CDS))
    vb = delta_versions(await request(b, CDS))
    assert va == vb
    await a.close()
    await b.close()


async def test_eds_subscribe_unsubscribe_resubscribe(mesh: Mesh) -> None:
    c = await client(mesh)
    await c.ack(await request(c, CDS))
    r = await request(c, EDS, [cluster("reviews")])
    assert set(delta_versions(r)) == {cluster("reviews")}
    assert addresses(r, cluster("reviews")) == ["127.0.0.11", "127.0.0.12"]
    await c.ack(r)
    r2 = await request(c, EDS, [cluster("ratings")])  # adds to the subscription
    assert set(delta_versions(r2)) == {cluster("ratings")}
    await c.ack(r2)
    await c.expect_none(0.2)

    await c.send(EDS, unsubscribe=[cluster("ratings")])
    await c.expect_none(0.3)  # an unsubscribe needs no answer
    assert (await mesh.syncz())["types"]["EDS"]["subscribed"] == [cluster("reviews")]
    # ratings' endpoints change: nothing for this client
    edit(mesh.root / "workloads.yaml", WORKLOADS + RATINGS_WE2)
    await c.expect_none(0.6)

    # resubscribe: sent again (the client dropped it), with the new endpoints
    r3 = await request(c, EDS, [cluster("ratings")])
    assert set(delta_versions(r3)) == {cluster("ratings")}
    assert addresses(r3, cluster("ratings")) == ["127.0.0.13", "127.0.0.14"]
    await c.close()


async def test_subscribing_a_missing_name_reports_it_removed(mesh: Mesh) -> None:
    c = await client(mesh)
    missing = cluster("nothere")
    r = await request(c, EDS, [cluster("reviews"), missing])
    assert set(delta_versions(r)) == {cluster("reviews")}
    assert list(r.removed_resources) == [missing]
    await c.close()


async def test_rds_subscribe_and_unsubscribe(mesh: Mesh) -> None:
    c = await client(mesh)
    r = await request(c, RDS, ["9080"])
    assert set(delta_versions(r)) == {"9080"}
    await c.ack(r)
    await c.send(RDS, unsubscribe=["9080"])
    await c.expect_none(0.3)
    # a route change is not pushed to a client no longer subscribed
    edit(mesh.root / "routing.yaml", ROUTING.replace("weight: 80", "weight: 70").replace("20", "30"))
    await c.expect_none(0.6)
    r2 = await request(c, RDS, ["9080"])
    assert set(delta_versions(r2)) == {"9080"}
    assert r2.resources[0].version != r.resources[0].version
    await c.close()


async def test_removed_resources_when_service_deleted(mesh: Mesh) -> None:
    c = await client(mesh)
    await c.ack(await request(c, CDS))
    eds = await request(c, EDS, [cluster("ratings"), cluster("reviews")])
    await c.ack(eds)
    await c.expect_none(0.2)
    without_ratings = SERVICES.split("---\n")[:2]
    edit(mesh.root / "services.yaml", "---\n".join(without_ratings))
    got = await c.drain(0.5)
    by_type = {SHORT[r.type_url]: r for r in got}
    assert [SHORT[r.type_url] for r in got][:2] == ["CDS", "EDS"]
    assert list(by_type["CDS"].removed_resources) == [cluster("ratings")]
    assert list(by_type["CDS"].resources) == []  # nothing else changed
    assert list(by_type["EDS"].removed_resources) == [cluster("ratings")]
    await c.close()


async def test_reconnect_with_initial_versions_sends_only_changes(mesh: Mesh) -> None:
    c = await client(mesh)
    cds = await request(c, CDS)
    eds = await request(c, EDS, [cluster("reviews"), cluster("ratings")])
    held_cds, held_eds = delta_versions(cds), delta_versions(eds)
    await c.close()

    # Same state: a reconnect with what the client holds gets nothing new (an empty
    # first response, so the client knows its resources are current).
    same = await client(mesh)
    r = await request(same, CDS, initial_versions=held_cds)
    assert list(r.resources) == [] and list(r.removed_resources) == []
    await same.close()

    # While disconnected: subset v3 added, ratings' endpoints change.
    edit(
        mesh.root / "routing.yaml",
        ROUTING.replace("  - {name: v2,", "  - {name: v3, labels: {version: v3}}\n  - {name: v2,"),
    )
    edit(mesh.root / "workloads.yaml", WORKLOADS + RATINGS_WE2)
    await mesh.wait_for(lambda s: len(s.endpoints.get("ratings.default.svc.cluster.local", ())) == 2)

    back = await client(mesh)
    stale = dict(held_cds)
    stale[cluster("productpage")] = "not-the-current-version"
    stale["outbound|9080||gone.default.svc.cluster.local"] = "whatever"
    r = await request(back, CDS, initial_versions=stale)
    assert set(delta_versions(r)) == {cluster("reviews", "v3"), cluster("productpage")}
    assert list(r.removed_resources) == ["outbound|9080||gone.default.svc.cluster.local"]
    r = await request(back, EDS, [cluster("reviews"), cluster("ratings")], initial_versions=held_eds)
    assert set(delta_versions(r)) == {cluster("ratings")}
    assert list(r.removed_resources) == []
    await back.close()


async def test_nack_is_recorded_and_not_resent(mesh: Mesh) -> None:
    c = await client(mesh)
    cds = await request(c, CDS)
    await c.nack(cds)
    await c.expect_none(1.0)
    w = (await mesh.syncz())["types"]["CDS"]
    assert w["nacks"] == 1 and w["acks"] == 0
    assert w["last_nack"]["message"] == "bad delta config (test)"
    assert w["last_nack"]["nonce"] == cds.nonce
    # A later change still reaches the client.
    edit(mesh.root / "services.yaml", SERVICES.replace("name: ratings", "name: details"))
    r = await c.recv_type(CDS)
    assert cluster("details") in delta_versions(r)
    assert cluster("ratings") in r.removed_resources
    await c.close()


async def test_push_order_and_eds_after_cds(mesh: Mesh) -> None:
    c = await client(mesh)
    subscribed_eds = [cluster("reviews"), cluster("ratings")]
    for t, names in ((CDS, []), (EDS, subscribed_eds), (LDS, []), (RDS, ["9080"])):
        await c.ack(await request(c, t, names))
    await c.expect_none(0.2)
    # A new subset and a route to it: a new cluster (Envoy subscribes to its EDS
    # itself), no change to the clusters whose EDS the client holds.
    edit(
        mesh.root / "routing.yaml",
        ROUTING.replace("  - {name: v2,", "  - {name: v3, labels: {version: v3}}\n  - {name: v2,").replace(
            "weight: 20}", "weight: 10}\n    - {destination: {host: reviews, subset: v3}, weight: 10}"
        ),
    )
    got = await c.drain(0.5)
    assert [SHORT[r.type_url] for r in got] == ["CDS", "RDS"]
    assert set(delta_versions(got[0])) == {cluster("reviews", "v3")}
    for r in got:
        await c.ack(r)
    # reviews becomes HTTP/2: its clusters change, so Envoy re-warms them and needs
    # their endpoints again; ratings' cluster is unchanged and its EDS is not resent.
    edit(
        mesh.root / "services.yaml",
        SERVICES.replace("reviews}\n  ports: [{name: http,", "reviews}\n  ports: [{name: http2,"),
    )
    got = await c.drain(0.5)
    order = [SHORT[r.type_url] for r in got]
    assert order[:2] == ["CDS", "EDS"] and order == sorted(order, key=["CDS", "EDS", "LDS", "RDS"].index)
    assert cluster("reviews") in delta_versions(got[0])
    assert cluster("ratings") not in delta_versions(got[0])
    assert set(delta_versions(got[1])) == {cluster("reviews")}
    await c.close()


async def test_first_responses_to_fresh_clients_are_shared_and_initial_versions_still_count(mesh: Mesh) -> None:
    """Two clients that hold nothing get the same first CDS response (encoded once,
    same nonce); a third that reconnects holding some clusters gets only the rest,
    and each stream's ACK and later pushes work on its own."""
    a, b = await client(mesh), await client(mesh)
    await a.send(CDS)
    ra = await a.recv_type(CDS)
    await b.send(CDS)
    rb = await b.recv_type(CDS)
    assert ra.SerializeToString() == rb.SerializeToString()
    assert set(delta_versions(ra)) == ALL_CLUSTERS
    held = dict(list(delta_versions(ra).items())[:3])
    c = await client(mesh)
    await c.send(CDS, initial_versions=held)
    rc = await c.recv_type(CDS)
    assert set(delta_versions(rc)) == ALL_CLUSTERS - set(held)
    for cl, r in ((a, ra), (b, rb), (c, rc)):
        await cl.ack(r)
    # a change reaches every stream, whatever first response it got
    edit(mesh.root / "routing.yaml", ROUTING.replace("weight: 80", "weight: 79").replace("weight: 20", "weight: 21"))
    for cl in (a, b, c):
        await cl.expect_none(0.3)  # CDS unchanged by a route weight
    edit(mesh.root / "services.yaml", SERVICES.replace("reviews", "reviewz"))
    for cl in (a, b, c):
        r = await cl.recv_type(CDS, timeout=5)
        assert cluster("reviewz") in delta_versions(r) and cluster("reviews") in r.removed_resources
    for cl in (a, b, c):
        await cl.close()
