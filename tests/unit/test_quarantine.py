"""Provenance and NACK quarantine over a real gRPC stream (issue 16).

The client plays an Envoy that rejects the CDS response while it holds the
ratings cluster but not the cluster of `details` in namespace `other` (hidden by
the reviews-v1 Sidecar's `./*` egress), naming the ratings cluster in its error
as Envoy does. The ratings cluster was built from its DestinationRule, the
Sidecar and the ratings Service: the control plane serves the proxy its config
without the DestinationRule first (still rejected), then without the Sidecar
(accepted), and quarantines the Sidecar for that proxy until it changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from envoy.service.discovery.v3 import discovery_pb2

from istiod_py.model import parse_proxy
from istiod_py.xds.types import TypeUrl
from tests.unit.xds_client import (
    CDS,
    FILES,
    SIDECARS,
    DeltaClient,
    Mesh,
    SotwClient,
    cluster,
    edit,
    error,
    make_node,
    names_of,
    running_mesh,
    write_config,
)

pytestmark = pytest.mark.timeout(60)

RATINGS_DR = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: default}
spec:
  host: ratings
  trafficPolicy: {connectionPool: {tcp: {maxConnections: 7}}}
"""

OTHER = """\
apiVersion: v1
kind: Service
metadata: {name: details, namespace: other}
spec:
  selector: {app: details}
  ports: [{name: http, port: 9080}]
"""

DETAILS = "outbound|9080||details.other.svc.cluster.local"
RATINGS = cluster("ratings")


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    write_config(tmp_path, {**FILES, "ratings-dr.yaml": RATINGS_DR, "other.yaml": OTHER})
    async with running_mesh(tmp_path, nack_quarantine=True) as m:
        yield m


def _proxy() -> object:
    node = make_node()
    return parse_proxy(node.id, {"NAMESPACE": "default", "LABELS": {"app": "reviews", "version": "v1"}})


async def test_resources_know_their_configs(mesh: Mesh) -> None:
    cp = mesh.cp
    assert cp.pipeline is not None
    proxy = _proxy()
    state = cp.pipeline.state
    cds = cp.translator.generate(state, proxy, TypeUrl.CLUSTER)  # type: ignore[arg-type]
    assert cds.origins_of(cluster("reviews", "v1")) >= {
        "DestinationRule/default/reviews",
        "Service/default/reviews",
        "Sidecar/default/reviews-v1",
    }
    assert "DestinationRule/default/reviews" not in cds.origins_of(RATINGS)
    assert "DestinationRule/default/ratings" in cds.origins_of(RATINGS)
    # Field paths: the DestinationRule parts that shaped each cluster.
    dr_fields = {r for r in cds.origins_of(cluster("reviews", "v1")) if r.startswith("DestinationRule/")}
    assert dr_fields == {"DestinationRule/default/reviews", "DestinationRule/default/reviews:spec.subsets[0]"}
    assert "DestinationRule/default/ratings:spec.trafficPolicy" in cds.origins_of(RATINGS)
    assert not any(":spec.subsets" in r for r in cds.origins_of(RATINGS))
    eds = cp.translator.generate(state, proxy, TypeUrl.ENDPOINT)  # type: ignore[arg-type]
    assert "DestinationRule/default/reviews" in eds.origins_of(cluster("reviews", "v2"))
    rds = cp.translator.generate(state, proxy, TypeUrl.ROUTE)  # type: ignore[arg-type]
    assert {"VirtualService/default/reviews", "Sidecar/default/reviews-v1"} <= rds.origins_of("9080")
    # Sub-resources: each virtual host knows its own VirtualService.
    assert "VirtualService/default/reviews" in rds.origins_of("9080", "reviews.default.svc.cluster.local:9080")
    assert "VirtualService/default/reviews:spec.http[0]" in rds.origins_of(
        "9080", "reviews.default.svc.cluster.local:9080"
    )
    assert "VirtualService/default/reviews" not in rds.origins_of("9080", "productpage.default.svc.cluster.local:9080")
    lds = cp.translator.generate(state, proxy, TypeUrl.LISTENER)  # type: ignore[arg-type]
    assert all("Sidecar/default/reviews-v1" in lds.origins_of(n) for n in lds.index)
    # Provenance is kept beside the resources, never in what is sent.
    assert b"DestinationRule" not in cds.joined()
    # Served by the debug endpoint too.
    c = await SotwClient(mesh.channel, make_node()).start()
    await c.subscribe(CDS)
    got = await mesh.get_json("/debug/provenancez?proxyID=reviews-v1.default&type=CDS")
    assert "DestinationRule/default/ratings" in got["resources"]["CDS"][RATINGS]
    await c.subscribe(TypeUrl.ROUTE, ["9080"])
    got = await mesh.get_json("/debug/provenancez?proxyID=reviews-v1.default&type=RDS")
    assert "VirtualService/default/reviews" in got["resources"]["RDS"]["9080/reviews.default.svc.cluster.local:9080"]
    await c.close()


def _bad(resp: discovery_pb2.DiscoveryResponse) -> bool:
    names = names_of(resp)
    return RATINGS in names and DETAILS not in names


async def _play_envoy(c: SotwClient, last_good: str, rounds: int) -> tuple[str, list[list[str]]]:
    """Answer `rounds` CDS responses as the picky Envoy would; the sets seen."""
    seen = []
    for _ in range(rounds):
        resp = await c.recv_type(CDS, timeout=3)
        seen.append(names_of(resp))
        if _bad(resp):
            err = error(f"Error adding/updating cluster(s) {RATINGS}: not accepted by this test")
            await c.send(CDS, version=last_good, nonce=resp.nonce, err=err)
        else:
            last_good = resp.version_info
            await c.ack(resp)
    return last_good, seen


async def test_bisect_names_and_quarantines_the_sidecar_until_it_changes(mesh: Mesh) -> None:
    c = await SotwClient(mesh.channel, make_node()).start()
    await c.send(CDS)
    # initial (bad) -> without the DestinationRule (still bad) -> without the Sidecar (good)
    _, seen = await _play_envoy(c, "", 3)
    assert [RATINGS in s and DETAILS not in s for s in seen] == [True, True, False], seen
    assert RATINGS in seen[2]  # only the Sidecar's effect is gone: the ratings cluster stays
    await c.expect_none(0.3)

    cases = await mesh.get_json("/debug/quarantinez")
    assert len(cases) == 1 and cases[0]["phase"] == "quarantined", cases
    assert [x["config"] for x in cases[0]["culprits"]] == ["Sidecar/default/reviews-v1"]
    assert cases[0]["rejected_resources"] == [RATINGS]
    sync = await mesh.syncz()
    assert sync["types"]["CDS"]["last_nack"]["origins"] == ["Sidecar/default/reviews-v1"]
    cfgz = await mesh.get_json("/debug/configz")
    assert any(e.startswith("Sidecar default/reviews-v1: rejected by 1 proxy") for e in cfgz["errors"]), cfgz
    _, text = await mesh.get_text("/metrics")
    assert 'pilot_xds_config_rejects_total{kind="Sidecar",name="reviews-v1",namespace="default",type="CDS"} 1.0' in text

    # Other configs' updates keep flowing while quarantined.
    edit(mesh.root / "ratings-dr.yaml", RATINGS_DR.replace("maxConnections: 7", "maxConnections: 8"))
    resp = await c.recv_type(CDS, timeout=3)
    assert not _bad(resp)
    await c.ack(resp)

    # The Sidecar changes: the quarantine ends and the proxy gets it again.
    edit(mesh.root / "sidecars.yaml", SIDECARS.replace("127.0.2.11", "127.0.2.12"))
    resp = await c.recv_type(CDS, timeout=3)
    assert DETAILS not in names_of(resp)
    assert not any(x["phase"] == "quarantined" for x in await mesh.get_json("/debug/quarantinez"))
    await c.close()


async def test_bisect_over_delta(mesh: Mesh) -> None:
    """The same over Delta xDS: a NACKed response leaves the client's resources
    as they were, and the quarantine's responses are deltas against what the
    server believes the client holds."""
    c = await DeltaClient(mesh.channel, make_node()).start()
    await c.send(CDS)
    held: set[str] = set()
    verdicts = []
    for _ in range(3):
        resp = await c.recv_type(CDS, timeout=3)
        candidate = (held | {r.name for r in resp.resources}) - set(resp.removed_resources)
        bad = RATINGS in candidate and DETAILS not in candidate
        verdicts.append(bad)
        if bad:
            err = error(f"Error adding/updating cluster(s) {RATINGS}: not accepted by this test")
            await c.send(CDS, nonce=resp.nonce, err=err)
        else:
            held = candidate
            await c.ack(resp)
    assert verdicts == [True, True, False], verdicts
    cases = await mesh.get_json("/debug/quarantinez")
    assert [x["config"] for x in cases[0]["culprits"]] == ["Sidecar/default/reviews-v1"], cases
    await c.expect_none(0.3)
    await c.close()


async def test_without_quarantine_a_nack_is_only_traced(tmp_path: Path) -> None:
    """Quarantine off (`--no-nack-quarantine`, as istiod): the suspects are named, most
    likely first, and the proxy is served nothing else (it stays STALE); its next ACK
    ends the record."""
    write_config(tmp_path, {**FILES, "ratings-dr.yaml": RATINGS_DR, "other.yaml": OTHER})
    async with running_mesh(tmp_path, nack_quarantine=False) as mesh:
        c = await SotwClient(mesh.channel, make_node()).start()
        await c.send(CDS)
        resp = await c.recv_type(CDS, timeout=3)
        err = error(f"Error adding/updating cluster(s) {RATINGS}: not accepted by this test")
        await c.send(CDS, version="", nonce=resp.nonce, err=err)
        await c.expect_none(0.5)  # nothing is served instead
        cases = await mesh.get_json("/debug/quarantinez")
        assert cases[0]["phase"] == "suspected" and cases[0]["culprits"] == [], cases
        assert cases[0]["suspects"] == ["DestinationRule/default/ratings", "Sidecar/default/reviews-v1"], cases
        sync = await mesh.syncz()
        # The suspects with the fields that built the rejected cluster.
        origins = ["DestinationRule/default/ratings:spec.trafficPolicy", "Sidecar/default/reviews-v1"]
        assert sync["types"]["CDS"]["last_nack"]["origins"] == origins
        assert sync["types"]["CDS"]["last_nack"]["quarantined"] is False
        # A config change is pushed as usual; its ACK ends the record.
        edit(mesh.root / "ratings-dr.yaml", RATINGS_DR.replace("maxConnections: 7", "maxConnections: 9"))
        await c.ack(await c.recv_type(CDS, timeout=3))
        await asyncio.sleep(0.2)
        assert await mesh.get_json("/debug/quarantinez") == []
        await c.close()
