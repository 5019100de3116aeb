"""Propagation status (issue 16): `istiod-py status --wait` against 50 real
gRPC ADS clients, exact from their ACKs: it returns only after the last
affected proxy ACKs the change, and times out naming the one that never does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from istiod_py.cli.app import parser
from istiod_py.cli.common import CliError
from tests.unit.xds_client import CDS, RDS, ROUTING, Mesh, SotwClient, edit, make_node, running_mesh, write_config

pytestmark = pytest.mark.timeout(120)

N = 50
LAGGARD = "p49.default"
VS = "VirtualService/default/reviews"


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    write_config(tmp_path)
    async with running_mesh(tmp_path) as m:
        yield m


async def _answer(c: SotwClient, ack: bool, quiet: float = 0.05) -> int:
    """Read what arrived; ACK the newest response of each type when `ack`."""
    latest: dict[str, Any] = {}
    for resp in await c.drain(quiet):
        latest[resp.type_url] = resp
    if ack:
        for resp in latest.values():
            await c.ack(resp, ["9080"] if resp.type_url == RDS else [])
    return len(latest)


async def _received_change(c: SotwClient) -> dict[str, Any]:
    """Reads until the pushed RDS arrives (bounded), then whatever follows it at once;
    the newest response of each type, not yet ACKed."""
    latest: dict[str, Any] = {}
    while RDS not in latest:
        resp = await c.recv(15)
        latest[resp.type_url] = resp
    for resp in await c.drain(0.05):
        latest[resp.type_url] = resp
    return latest


async def _ack_latest(c: SotwClient, latest: dict[str, Any]) -> None:
    for resp in latest.values():
        await c.ack(resp, ["9080"] if resp.type_url == RDS else [])


def _status(mesh: Mesh, *extra: str) -> tuple[int, str]:
    args = parser().parse_args(["status", "--debug-address", mesh.debug_url, "-o", "json", *extra])
    try:
        return int(args.func(args)), ""
    except CliError as e:
        return int(e.code), str(e)


async def test_status_wait_and_the_proxy_that_never_acks(mesh: Mesh) -> None:
    clients = []
    for i in range(N):
        c = await SotwClient(mesh.channel, make_node(ip=f"127.0.3.{i + 1}", name=f"p{i}", labels={"app": "c"})).start()
        await c.send(CDS)
        await c.send(RDS, ["9080"])
        clients.append(c)
    laggard = clients[-1]
    for c in clients:
        await c.recv_type(CDS, timeout=5)  # the first responses, then ACKs (not the laggard)
    await asyncio.gather(*(_answer(c, c is not laggard, 0.3) for c in clients))
    # Every client got the first RDS too: ACK it (drain read it above along with the rest).
    # The server handles ACKs asynchronously and, on a loaded box, a response may arrive
    # after the drain's quiet period: poll (bounded), ACKing anything late, until settled.
    deadline = time.monotonic() + 15
    while True:
        report = await mesh.get_json(f"/debug/statusz?resource={VS}")
        vs = report["resources"][VS]
        if vs["live"] == N - 1 or time.monotonic() > deadline:
            break
        late = [c for c in clients if c is not laggard and c.node.id.split("~")[2] in vs["pending"]]
        await asyncio.gather(*(_answer(c, True) for c in late))
        await asyncio.sleep(0.2)
    assert vs["proxies"] == N and vs["live"] == N - 1 and vs["pending"] == [LAGGARD], vs

    # Change the VirtualService; status --wait runs while the ACKs come in.
    # The push reaches every client first (bounded), so that the wait's timeout
    # measures only the ACKs, not the file watcher on a loaded box.
    edit(mesh.root / "routing.yaml", ROUTING.replace("weight: 80", "weight: 70").replace("weight: 20", "weight: 30"))
    pushed = await asyncio.gather(*(_received_change(c) for c in clients))
    waiting = asyncio.create_task(asyncio.to_thread(_status, mesh, VS, "--wait", "--timeout", "3"))
    await asyncio.sleep(0.3)
    for c, latest in zip(clients[: N - 2], pushed, strict=False):
        await _ack_latest(c, latest)
    assert not waiting.done(), "returned before the last ACK"
    await _ack_latest(clients[N - 2], pushed[N - 2])
    code, err = await waiting
    assert code == 1 and "pending" in err and LAGGARD in err and "p48" not in err, err

    # Now the laggard ACKs: a wait started before its ACK returns right after it.
    t0 = time.monotonic()
    waiting = asyncio.create_task(asyncio.to_thread(_status, mesh, VS, "--wait", "--timeout", "20"))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    await _ack_latest(laggard, pushed[-1])  # the change it received above
    code, err = await waiting
    assert (code, err) == (0, "")
    assert time.monotonic() - t0 < 5
    report = await mesh.get_json(f"/debug/statusz?resource={VS}")
    assert report["resources"][VS]["live"] == N
    # Every config at once, and an unknown one named.
    everything = await mesh.get_json("/debug/statusz")
    assert "DestinationRule/default/reviews" in everything["resources"]
    code, err = await asyncio.to_thread(_status, mesh, "VirtualService/default/nope")
    assert code == 1 and "VirtualService/default/nope" in err
    for c in clients:
        await c.close()
