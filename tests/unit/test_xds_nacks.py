"""NACKs cannot flood the log or the debug page (issue 9).

A proxy NACKing in a loop with a large error detail once wrote 82 MB of log in
under a second. Each NACK is still counted (metrics, /debug/syncz), but the log
gets the first NACK of a proxy and then at most a line per interval, and both
the log line and the stored detail are truncated.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from istiod_py.xds.nacklog import LOG_DETAIL_CHARS, STORED_DETAIL_CHARS, NackLog
from tests.unit.xds_client import (
    CDS,
    EDS,
    DeltaClient,
    Mesh,
    SotwClient,
    cluster,
    error,
    make_node,
    running_mesh,
    write_config,
)

pytestmark = pytest.mark.timeout(60)

DETAIL = "Proto constraint validation failed (field 'x'): " + "y" * (16 * 1024)
FLOOD = 5000


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    write_config(tmp_path)
    async with running_mesh(tmp_path) as m:
        yield m


@pytest.fixture
def xds_log() -> Iterator[io.StringIO]:
    """Everything the xDS server logs at WARNING and above, as text."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("istiod_py.xds")
    old_level = logger.level
    logger.setLevel(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


async def _until_nacks(mesh: Mesh, short: str, count: int, proxy: str = "reviews-v1.default") -> dict[str, object]:
    for _ in range(600):
        w = (await mesh.syncz(proxy))["types"][short]
        if w["nacks"] >= count:
            return dict(w)
        await asyncio.sleep(0.05)
    raise AssertionError(f"{short}: {w['nacks']} NACKs recorded, {count} sent")


async def test_sotw_nack_flood_logs_little_and_stores_truncated(mesh: Mesh, xds_log: io.StringIO) -> None:
    c = await SotwClient(mesh.channel, make_node()).start()
    names = [cluster("ratings"), cluster("reviews")]
    r = await c.subscribe(EDS, names)
    for _ in range(FLOOD):
        await c.send(EDS, names, version="", nonce=r.nonce, err=error(DETAIL))
    w = await _until_nacks(mesh, "EDS", FLOOD)
    assert w["nacks"] == FLOOD and w["acks"] == 0
    await c.expect_none(0.2)  # a NACK is answered by nothing
    stored = w["last_nack"]["message"]  # type: ignore[index]
    assert stored.startswith(DETAIL[:STORED_DETAIL_CHARS])
    assert len(stored) < STORED_DETAIL_CHARS + 100
    text = xds_log.getvalue()
    assert len(text.encode()) < 16 * 1024, f"{len(text)} bytes of log for {FLOOD} NACKs"
    lines = [line for line in text.splitlines() if "rejected EDS" in line]
    assert len(lines) == 1, lines  # the first NACK; the rest within the interval are held back
    assert DETAIL[:LOG_DETAIL_CHARS] in lines[0] and DETAIL[: LOG_DETAIL_CHARS + 1] not in lines[0]
    await c.close()


async def test_delta_nack_flood_logs_little(mesh: Mesh, xds_log: io.StringIO) -> None:
    c = await DeltaClient(mesh.channel, make_node()).start()
    await c.send(CDS)
    r = await c.recv_type(CDS)
    for _ in range(FLOOD // 5):
        await c.send(CDS, nonce=r.nonce, err=error(DETAIL))
    w = await _until_nacks(mesh, "CDS", FLOOD // 5)
    assert len(w["last_nack"]["message"]) < STORED_DETAIL_CHARS + 100  # type: ignore[index]
    assert len(xds_log.getvalue().encode()) < 16 * 1024
    await c.close()


def test_nack_log_one_line_per_proxy_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    nl = NackLog(interval=10.0, max_proxies=2, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="istiod_py.xds")
    for _ in range(50):
        nl.nack("a", "CDS", "v1", "bad")
    nl.nack("b", "LDS", "v1", "worse")  # another proxy is not held back by a's flood
    assert [r.getMessage() for r in caplog.records] == [
        "a rejected CDS version v1: bad",
        "b rejected LDS version v1: worse",
    ]
    now[0] += 10.0
    nl.nack("a", "CDS", "v2", "bad")
    assert caplog.records[-1].getMessage() == (
        "a rejected CDS version v2: bad (49 more NACKs from this proxy in the last 10s not logged)"
    )
    nl.nack("c", "CDS", "v1", "x" * 5000)  # a third proxy evicts the oldest (bounded memory)
    assert len(caplog.records[-1].getMessage()) < LOG_DETAIL_CHARS + 200
    nl.nack("b", "LDS", "v1", "worse")  # b was evicted: logged again at once
    assert caplog.records[-1].getMessage() == "b rejected LDS version v1: worse"
