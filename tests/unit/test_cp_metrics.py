"""Control-plane metrics come out of /metrics (port 15014) under istiod's names and
meanings: counters without a `_total` suffix, internal (generation) errors apart
from rejected configs, and the push pipeline's triggers and timings."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from istiod_py.server import ControlPlane
from tests.unit.xds_client import CDS, LDS, SotwClient, StreamClosed, edit, make_node, options, write_config

pytestmark = pytest.mark.timeout(20)

BAD_VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}, weight: 200}]
"""
EXTRA_SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: extra, namespace: default}
spec:
  selector: {app: extra}
  ports: [{name: http, port: 9080}]
"""


async def scrape(cp: ControlPlane) -> str:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{cp.ports['debug']}/metrics") as r:
        assert r.status == 200
        return await r.text()


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The text format read literally (prometheus_client's parser renames counters)."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            labels = frozenset(_LABEL.findall(m.group(2) or ""))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(text: str, metric: str, **labels: str) -> float:
    return samples(text).get((metric, frozenset(labels.items())), -1.0)


async def test_metrics_exposition_names_and_meanings(tmp_path: Path) -> None:
    write_config(tmp_path)
    (tmp_path / "bad.yaml").write_text(BAD_VS)
    cp = ControlPlane(replace(options(tmp_path)))
    await cp.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{cp.ports['xds']}")
    try:
        client = await SotwClient(channel, make_node()).start()
        cds = await client.subscribe(CDS)
        await client.ack(cds)
        # A request answering a nonce that is not the current one: expired.
        await client.send(CDS, version=cds.version_info, nonce="not-a-nonce")
        lds = await client.subscribe(LDS)
        await client.ack(lds)
        # A config change: a push with trigger "config" through the debouncer and push queue.
        edit(tmp_path / "extra.yaml", EXTRA_SERVICE)
        await client.drain(0.5)
        text = await scrape(cp)

        assert re.search(r"^# TYPE pilot_xds_pushes counter$", text, re.M)
        for bare in (
            "pilot_xds_pushes",
            "pilot_total_xds_rejects",
            "pilot_total_xds_internal_errors",
            "pilot_total_rejected_configs",
            "pilot_push_triggers",
            "pilot_xds_expired_nonce",
        ):
            assert f"{bare}_total" not in text, bare
        assert value(text, "pilot_xds_pushes", type="cds") >= 2
        assert value(text, "pilot_xds_pushes", type="lds") >= 1
        assert value(text, "pilot_xds_expired_nonce", type="cds") == 1
        assert value(text, "pilot_total_xds_internal_errors") == 0
        assert value(text, "pilot_total_rejected_configs", type="virtualservice", name="default/broken") >= 1
        assert value(text, "pilot_push_triggers", type="config") >= 1
        assert cp.pipeline is not None
        assert value(text, "pilot_services") == len(cp.pipeline.state.services) > 0
        assert value(text, "pilot_virt_services") == 1  # the broken one is not in the state
        assert value(text, "pilot_debounce_time_count") >= 1
        assert value(text, "pilot_proxy_queue_time_count") >= 1
        assert value(text, "pilot_xds_push_time_count", type="cds") >= 1
        assert value(text, "pilot_xds_config_size_bytes_count", type="cds") >= 2
        assert value(text, "pilot_xds_config_size_bytes_sum", type="cds") > 100
        info = [k for k in samples(text) if k[0] == "pilot_info"]
        assert len(info) == 1 and value(text, "pilot_info", **dict(info[0][1])) == 1

        # A translation failure is an internal error, not a rejected config.
        assert cp.xds is not None

        def broken(*_: Any) -> Any:
            raise RuntimeError("boom")

        cp.xds._generate = broken
        other = await SotwClient(channel, make_node(ip="127.0.0.10", name="productpage-v1")).start()
        await other.send(CDS)
        with pytest.raises(StreamClosed, match="INTERNAL"):
            await other.drain(0.3)
        text = await scrape(cp)
        assert value(text, "pilot_total_xds_internal_errors") == 1
        await client.close()
    finally:
        await channel.close()
        await cp.stop(0)
