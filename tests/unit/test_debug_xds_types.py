"""The payloads for istiod's debug xDS types (debug/xds_debug.py), against a real
control plane with a real gRPC client: `istio.io/debug/syncz` gives one CSDS
ClientConfig per proxy with istiod's SYNCED / NOT_SENT per type; a
`istio.io/debug/config_dump` for a proxy is its ConfigDump; an unknown proxy, none.
(Served on the xDS port once the xDS server has the hook the ops report asks for.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from envoy.admin.v3 import config_dump_pb2
from envoy.service.status.v3 import csds_pb2

from istiod_py.debug import xds_debug
from istiod_py.debug.xds_views import XdsViews
from istiod_py.xds.types import TypeUrl
from tests.unit.xds_client import CDS, EDS, Mesh, SotwClient, make_node, names_of, running_mesh, write_config

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    write_config(tmp_path)
    async with running_mesh(tmp_path) as m:
        yield m


async def test_syncz_and_config_dump_payloads(mesh: Mesh) -> None:
    views = XdsViews(mesh.cp.xds)  # its recorder sees the ACKs from here on
    c = await SotwClient(mesh.channel, make_node()).start()
    r = await c.subscribe(CDS, [])
    await c.ack(r, [])
    eds = [n for n in names_of(r) if n.startswith("outbound|")]
    r2 = await c.subscribe(EDS, eds)
    await c.ack(r2, eds)
    await c.expect_none(0.1)

    [(name, cc)] = xds_debug.resources(views, xds_debug.SYNCZ, []) or []
    assert isinstance(cc, csds_pb2.ClientConfig)
    assert name == cc.node.id == make_node().id
    assert cc.node.metadata.fields["NAMESPACE"].string_value == "default"
    status = {g.type_url: g.config_status for g in cc.generic_xds_configs}
    assert status[TypeUrl.CLUSTER] == status[TypeUrl.ENDPOINT] == csds_pb2.SYNCED
    assert status[TypeUrl.LISTENER] == status[TypeUrl.SECRET] == csds_pb2.NOT_SENT

    [(pid, dump)] = xds_debug.resources(views, xds_debug.CONFIG_DUMP, ["reviews-v1.default"]) or []
    assert pid == "reviews-v1.default" and isinstance(dump, config_dump_pb2.ConfigDump)
    kinds = [a.type_url.rsplit(".", 1)[1] for a in dump.configs]
    assert kinds == ["ClustersConfigDump", "EndpointsConfigDump"]
    assert xds_debug.resources(views, xds_debug.CONFIG_DUMP, ["nobody.default"]) == []
    assert xds_debug.resources(views, "istio.io/debug/other", []) is None
    await c.close()


async def test_delta_config_dump_holds_acked_not_nacked(mesh: Mesh) -> None:
    """Delta: /debug/config_dump is what the client ACKed; a NACKed update is not in it."""
    from tests.unit.test_xds_delta import delta_versions
    from tests.unit.xds_client import SERVICES, DeltaClient, cluster, edit

    c = await DeltaClient(mesh.channel, make_node()).start()
    await c.send(CDS, [])
    cds = await c.recv_type(CDS)
    await c.ack(cds)
    await c.expect_none(0.2)

    async def held() -> set[str]:
        dump = await mesh.get_json("/debug/config_dump?proxyID=reviews-v1.default")
        [cd] = [x for x in dump["configs"] if x["@type"].endswith("ClustersConfigDump")]
        return {x["cluster"]["name"] for x in cd["dynamic_active_clusters"]}

    first = set(delta_versions(cds))
    assert await held() == first
    edit(mesh.root / "services.yaml", SERVICES.replace("name: ratings", "name: details"))
    update = await c.recv_type(CDS)
    assert cluster("details") in delta_versions(update)
    await c.nack(update)
    await c.expect_none(0.2)
    assert await held() == first  # the rejected update is not what the proxy holds
    sync = await mesh.syncz()
    # resources_sent is what the last responses carried (ratings replaced by details), ACKed or not.
    assert sync["types"]["CDS"]["resources_sent"] == len(first)
    await c.close()
