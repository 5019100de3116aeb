"""istiod's debug types over ADS (istio.io/debug/syncz, istio.io/debug/config_dump):
tools that ask istiod over xDS get the same answers from istiod_py, through a real
gRPC stream on the xDS port."""

from __future__ import annotations

from pathlib import Path

from envoy.admin.v3 import config_dump_pb2
from envoy.service.status.v3 import csds_pb2

from istiod_py.debug import xds_debug
from tests.unit.xds_client import CDS, SotwClient, make_node, running_mesh, write_config


async def test_syncz_and_config_dump_answered_on_the_xds_port(tmp_path: Path) -> None:
    write_config(tmp_path)
    async with running_mesh(tmp_path) as m:
        proxy = await SotwClient(m.channel, make_node()).start()
        r = await proxy.subscribe(CDS)
        await proxy.ack(r)
        await m.wait_for(lambda s: True)

        tool = await SotwClient(m.channel, make_node(ip="127.0.0.99", name="istioctl")).start()
        resp = await tool.subscribe(xds_debug.SYNCZ)
        configs = {}
        for any_msg in resp.resources:
            cc = csds_pb2.ClientConfig()
            assert any_msg.Unpack(cc)
            configs[cc.node.id] = {g.type_url: g.config_status for g in cc.generic_xds_configs}
        reviews = next(v for k, v in configs.items() if "reviews-v1" in k)
        assert reviews[CDS] == csds_pb2.SYNCED
        # An ACK of a debug answer is not an error and gets no answer.
        await tool.ack(resp)
        await tool.expect_none()

        node_id = make_node().id
        dump_resp = await tool.subscribe(xds_debug.CONFIG_DUMP, [node_id])
        assert len(dump_resp.resources) == 1
        dump = config_dump_pb2.ConfigDump()
        assert dump_resp.resources[0].Unpack(dump)
        assert dump.configs, "the proxy's ACKed clusters are in its config dump"
        await tool.close()
        await proxy.close()
