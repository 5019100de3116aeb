"""Push attribution (issue 16): each push is charged to the config changes that
triggered it, with its cost (proxies, bytes, translation and send time), and
/debug/push_status ranks the triggers over a window."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.unit.xds_client import (
    CDS,
    LDS,
    RDS,
    ROUTING,
    WORKLOADS,
    Mesh,
    SotwClient,
    edit,
    make_node,
    running_mesh,
    write_config,
)

pytestmark = pytest.mark.timeout(60)

N = 3


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    write_config(tmp_path)
    async with running_mesh(tmp_path) as m:
        yield m


async def _sync(clients: list[SotwClient]) -> None:
    for c in clients:
        for resp in await c.drain(0.3):
            await c.ack(resp, ["9080"] if resp.type_url == RDS else [])


async def test_pushes_are_charged_to_their_triggers(mesh: Mesh) -> None:
    clients = []
    for i in range(N):
        c = await SotwClient(mesh.channel, make_node(ip=f"127.0.4.{i + 1}", name=f"a{i}", labels={"app": "a"})).start()
        for t, names in ((CDS, []), (LDS, []), (RDS, ["9080"])):
            await c.send(t, names)
        clients.append(c)
    await _sync(clients)

    edit(mesh.root / "routing.yaml", ROUTING.replace("weight: 80", "weight: 75").replace("weight: 20", "weight: 25"))
    await _sync(clients)
    status = await mesh.get_json("/debug/push_status")
    top = {t["trigger"]: t for t in status["top_triggers"]}
    vs = top["VirtualService/default/reviews"]
    assert vs["pushes"] == 1 and vs["proxy_pushes"] == N, vs
    assert vs["bytes"] > 0 and vs["build_s"] >= 0 and vs["send_s"] >= 0, vs
    assert "DestinationRule/default/reviews" not in top  # unchanged: not a trigger

    # An endpoint-only change is charged to its WorkloadEntry and the endpoints of its host.
    more = WORKLOADS + (
        "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
        "metadata: {name: reviews-v3, namespace: default}\n"
        "spec: {address: 127.0.0.15, labels: {app: reviews, version: v2}, serviceAccount: bookinfo-reviews}\n"
    )
    for c in clients:
        await c.send(
            "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
            ["outbound|9080|v2|reviews.default.svc.cluster.local"],
        )
    await _sync(clients)
    edit(mesh.root / "workloads.yaml", more)
    await _sync(clients)
    got = await mesh.get_json("/debug/push_attribution?window=60")
    triggers = {t["trigger"]: t for t in got["top_triggers"]}
    eds = triggers["endpoints:reviews.default.svc.cluster.local"]
    assert eds["proxy_pushes"] == N and eds["bytes"] > 0, eds
    # The WorkloadEntry that was added, and the endpoints it changed.
    assert got["recent"][-1]["triggers"] == [
        "WorkloadEntry/default/reviews-v3",
        "endpoints:reviews.default.svc.cluster.local",
    ]
    assert got["recent"][-1]["full"] is False
    # Ranked by bytes: the route change (RDS to every proxy) cost more than the endpoint change.
    order = [t["trigger"] for t in got["top_triggers"]]
    assert order.index("VirtualService/default/reviews") < order.index("endpoints:reviews.default.svc.cluster.local")
    for c in clients:
        await c.close()
