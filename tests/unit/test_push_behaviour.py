"""Push behaviour under load and failure, driven by real gRPC clients against a
real in-process ControlPlane (see xds_client.py): merged pushes for busy
streams, the concurrency caps, EDS-only and no-op pushes, stuck clients,
connection recycling and the graceful drain.

Nothing here is timed. A "slow" client is a real one that stops reading: it has
its own HTTP/2 connection with a fixed 64 KiB window (no BDP probing), and the
push it stops reading carries enough new services that the CDS response
(~130 KB) does not fit, so the server's send really blocks on flow control until
the client reads again. (gRPC widens a stream's window to fit a message the
client is reading, so the blocking response must be bigger than any before it.)
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from istiod_py.config.store import FileSource
from istiod_py.registry.aggregate import Aggregator
from istiod_py.server import ControlPlane
from istiod_py.xds.connection import PushRequest
from istiod_py.xds.pipeline import PushPipeline
from istiod_py.xds.server import MAX_QUEUED_REQUESTS, Stream
from tests.unit.xds_client import (
    CDS,
    EDS,
    LDS,
    RDS,
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
    options,
    write_config,
)

pytestmark = pytest.mark.timeout(20)

EDS_NAMES = [cluster("productpage"), cluster("ratings"), cluster("reviews", "v1"), cluster("reviews", "v2")]
PRODUCTPAGE: dict[str, Any] = {"ip": "127.0.0.10", "name": "productpage-v1", "labels": {"app": "productpage"}}


def services(names: list[str], namespace: str = "default") -> str:
    return "".join(
        f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: {n}, namespace: {namespace}}}\n"
        f"spec:\n  selector: {{app: {n}}}\n  ports: [{{name: http, port: 9080}}]\n"
        for n in names
    )


# Enough clusters that one CDS response (~130 KB) overflows a 64 KiB HTTP/2 window.
BULK = services([f"bulk{i}" for i in range(400)])


@asynccontextmanager
async def control_plane(root: Path, *, big: bool = False, **opts: Any) -> AsyncIterator[Mesh]:
    write_config(root)
    if big:
        (root / "bulk.yaml").write_text(BULK)
    cp = ControlPlane(replace(options(root), **opts))
    await cp.start()
    assert cp.xds is not None
    cp.xds.watchdog_interval = 0.05
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{cp.ports['xds']}")
    try:
        yield Mesh(root, cp, channel)
    finally:
        await channel.close()
        await cp.stop(0)


class GatedClient(SotwClient):
    """Reads only the responses it is allowed to (`allow`), on its own connection
    with a fixed 64 KiB flow-control window: between allowances it is a proxy that
    stopped reading, and a large enough response blocks the server's send. (No read
    is left pending: gRPC would widen the window for it.)"""

    def __init__(self, mesh: Mesh, node: base_pb2.Node) -> None:
        self.own_channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{mesh.cp.ports['xds']}",
            options=[("grpc.http2.bdp_probe", 0), ("grpc.use_local_subchannel_pool", 1)],
        )
        super().__init__(self.own_channel, node)
        self.budget = 0.0
        self._more = asyncio.Event()

    def allow(self, n: float = math.inf) -> None:
        """Read `n` more responses (by default: read everything from now on)."""
        self.budget += n
        self._more.set()

    async def subscribe(self, type_url: str, names: Iterable[str] = ()) -> discovery_pb2.DiscoveryResponse:
        self.allow(1)
        return await super().subscribe(type_url, names)

    async def _read(self) -> None:
        try:
            while True:
                while self.budget <= 0:
                    self._more.clear()
                    await self._more.wait()
                self.budget -= 1
                msg = await self.call.read()
                if msg is grpc.aio.EOF:
                    self.closed = StreamClosed(await self.call.code(), await self.call.details())
                    break
                await self.responses.put(msg)
        except grpc.aio.AioRpcError as e:
            self.closed = StreamClosed(e.code(), e.details())
        except asyncio.CancelledError:
            self.closed = StreamClosed(grpc.StatusCode.CANCELLED, "client closed")
        await self.responses.put(self.closed)

    async def close(self) -> None:
        await super().close()
        await self.own_channel.close()


async def subscribe(c: SotwClient, *types: str) -> dict[str, str]:
    """Subscribe to `types` (wildcard CDS/LDS, the bookinfo EDS clusters, route
    "9080"), ACK each response; returns the version per type."""
    versions = {}
    for t in types:
        names = EDS_NAMES if t == EDS else ["9080"] if t == RDS else []
        r = await c.subscribe(t, names)
        await c.ack(r, names)
        versions[t] = r.version_info
    return versions


async def plain(mesh: Mesh, *types: str, **node: Any) -> tuple[SotwClient, dict[str, str]]:
    c = await SotwClient(mesh.channel, make_node(**node)).start()
    return c, await subscribe(c, *types)


async def gated(mesh: Mesh, *types: str, **node: Any) -> GatedClient:
    c = GatedClient(mesh, make_node(**node))
    await c.start()
    await subscribe(c, *types)
    return c


def stream_of(mesh: Mesh, proxy_id: str) -> Stream:
    assert mesh.cp.xds is not None
    found = [s for s in mesh.cp.xds.streams.values() if s.info is not None and s.info.proxy.id == proxy_id]
    assert len(found) == 1, [s.info.conn_id for s in found if s.info]
    return found[0]


async def until(cond: Callable[[], Any], timeout: float = 3.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def add_services(mesh: Mesh, names: list[str], *, bulk: bool = False) -> int:
    """Edit the config (new services, and with `bulk` the 400 bulk ones: a full
    push) and wait until the pipeline has built and pushed it; returns the new
    state version."""
    assert mesh.cp.pipeline is not None
    before = mesh.cp.pipeline.state.version
    edit(mesh.root / "services.yaml", SERVICES + (BULK if bulk else "") + services(names))
    await mesh.wait_for(lambda s: s.version > before and f"{names[-1]}.default.svc.cluster.local" in s.services)
    return mesh.cp.pipeline.state.version


def metric(mesh: Mesh, name: str, labels: dict[str, str] | None = None) -> float:
    return mesh.cp.metrics.registry.get_sample_value(name, labels or {}) or 0.0


def types_of(responses: list[Any]) -> Counter[str]:
    return Counter(SHORT[r.type_url] for r in responses)


# --- 1. one pending push per stream, merged -------------------------------------------


async def test_pushes_queued_behind_the_push_cap_merge_into_one_of_the_newest_state(tmp_path: Path) -> None:
    async with control_plane(tmp_path, max_concurrent_pushes=1) as mesh:
        c, before = await plain(mesh, CDS, EDS, LDS, RDS)
        stream = stream_of(mesh, "reviews-v1.default")
        xds = mesh.cp.xds
        assert xds is not None
        # The test holds the only push slot: five config versions pile up.
        async with xds.push_slots:
            for i in range(5):
                newest = await add_services(mesh, [f"extra{j}" for j in range(i + 1)])
            await c.expect_none(0.2)
            assert stream.pending is not None and stream.pending.state.version == newest
            assert stream.events.qsize() <= 1  # at most one push signal, whatever the backlog
        got = await c.drain(0.4)
        # One push of the newest state: one response per changed type, no backlog.
        # (LDS is unchanged: this proxy's Sidecar binds one egress port, 9080.)
        assert types_of(got) == {"CDS": 1, "EDS": 1, "RDS": 1}, types_of(got)
        cds = next(r for r in got if r.type_url == CDS)
        assert cluster("extra4") in names_of(cds)
        assert all(r.version_info != before[r.type_url] for r in got)
        assert stream.pending is None and stream.info is not None and stream.info.last_push_state == newest
        # The merged push reflects the newest state exactly: a fresh client agrees.
        fresh, now = await plain(mesh, CDS, EDS, LDS, RDS)
        assert {r.type_url: r.version_info for r in got} == {t: v for t, v in now.items() if t != LDS}
        assert now[LDS] == before[LDS]
        await c.close()
        await fresh.close()


async def test_stream_blocked_on_a_slow_write_gets_one_merged_push_not_a_backlog(tmp_path: Path) -> None:
    async with control_plane(tmp_path) as mesh:
        slow = await gated(mesh, CDS)
        stream = stream_of(mesh, "reviews-v1.default")
        await add_services(mesh, ["extra0"], bulk=True)
        await until(lambda: stream.writing_since > 0, what="the CDS send to block")
        for i in range(1, 5):
            newest = await add_services(mesh, [f"extra{j}" for j in range(i + 1)], bulk=True)
        assert stream.writing_since > 0  # still blocked
        assert stream.pending is not None and stream.pending.state.version == newest
        assert stream.events.qsize() <= 1
        slow.allow()
        got = await slow.drain(0.5)
        # The send that was blocked (extra0), then ONE push with extra4: none of the
        # three versions in between.
        assert [SHORT[r.type_url] for r in got] == ["CDS", "CDS"]
        first, last = names_of(got[0]), names_of(got[1])
        assert cluster("extra0") in first and cluster("extra1") not in first
        assert {cluster(f"extra{i}") for i in range(5)} <= set(last)
        await slow.close()


async def test_pipeline_stop_drops_a_change_still_debouncing(tmp_path: Path) -> None:
    write_config(tmp_path)
    agg = Aggregator()
    src = FileSource(str(tmp_path), lambda snap: None, 0.05)
    agg.set_source(src.name, src.load())
    pushes: list[PushRequest] = []
    pipe = PushPipeline(agg, pushes.append, quiet=0.2)
    edit(tmp_path / "services.yaml", SERVICES + services(["late"]))
    pipe.source_changed(src.name, src.load())
    assert not pipe.idle.is_set()
    await pipe.stop()
    assert pipe.idle.is_set()
    await asyncio.sleep(0.3)
    assert pushes == []


# --- 2. concurrency caps ---------------------------------------------------------------


async def test_concurrent_pushes_are_capped(tmp_path: Path) -> None:
    async with control_plane(tmp_path, max_concurrent_pushes=2) as mesh:
        xds = mesh.cp.xds
        assert xds is not None
        clients = [await gated(mesh, CDS, ip=f"127.0.6.{i}", name=f"slow{i}") for i in range(5)]
        await add_services(mesh, ["extra0"], bulk=True)
        await until(lambda: xds.push_slots.inflight == 2, what="two pushes in flight")
        await asyncio.sleep(0.2)  # time for any (wrong) third push to start
        writing = [s for s in xds.streams.values() if s.writing_since > 0]
        waiting = [s for s in xds.streams.values() if s.pending is not None]
        assert len(writing) == 2 and len(waiting) == 3
        assert metric(mesh, "pilot_xds_push_inflight") == 2
        for c in clients:
            c.allow()
        for c in clients:
            r = await c.recv_type(CDS, timeout=3)
            assert cluster("extra0") in names_of(r)
        assert xds.push_slots.peak == 2
        await until(lambda: xds.push_slots.inflight == 0, what="pushes to finish")
        assert metric(mesh, "pilot_xds_push_inflight") == 0
        for c in clients:
            await c.close()


async def test_reconnect_storm_initial_pushes_are_capped_in_order_and_all_served(tmp_path: Path) -> None:
    async with control_plane(tmp_path, big=True, max_concurrent_initial=3) as mesh:
        xds = mesh.cp.xds
        assert xds is not None
        clients: list[GatedClient] = []
        for i in range(10):  # connect one after another, so the arrival order is known
            c = GatedClient(mesh, make_node(ip=f"127.0.7.{i}", name=f"storm{i}"))
            await c.start()
            await c.send(CDS)
            clients.append(c)
            await until(lambda: len(xds.streams) == len(clients), what=f"stream {i} registered")

        def writing() -> list[str]:
            return sorted(s.proxy.id.split(".")[0] for s in xds.streams.values() if s.writing_since)

        await until(lambda: xds.initial_slots.inflight == 3, what="three initial pushes in flight")
        await asyncio.sleep(0.2)
        assert writing() == ["storm0", "storm1", "storm2"]
        assert metric(mesh, "pilot_xds_initial_push_inflight") == 3
        # The first one reads: the slot goes to the next in arrival order.
        clients[0].allow()
        first_cds = await clients[0].recv_type(CDS, timeout=3)
        await until(lambda: "storm3" in writing(), what="storm3 to be served next")
        assert writing() == ["storm1", "storm2", "storm3"]
        # Everyone reads: every stream gets its full config (CDS, EDS, LDS, RDS).
        for c in clients[1:]:
            c.allow()
        want = None
        for c in clients:
            cds = first_cds if c is clients[0] else await c.recv_type(CDS, timeout=5)
            assert cluster("bulk399") in names_of(cds)
            await c.ack(cds)
            versions = await subscribe(c, EDS, LDS, RDS)
            assert all(versions.values())
            versions.pop(LDS)  # inbound listeners differ: each proxy has its own IP
            want = want or versions
            assert versions == want
        assert xds.initial_slots.peak == 3
        assert metric(mesh, "pilot_xds_initial_push_inflight") == 0
        for c in clients:
            await c.close()


# --- 3. only what changed --------------------------------------------------------------


async def test_endpoint_only_change_sends_only_eds_for_the_affected_clusters(tmp_path: Path) -> None:
    async with control_plane(tmp_path) as mesh:
        a, _ = await plain(mesh, CDS, EDS, LDS, RDS, **PRODUCTPAGE)
        b, _ = await plain(mesh, CDS, EDS, LDS, RDS)  # reviews-v1 (with a Sidecar)
        sent_before = {t: metric(mesh, "pilot_xds_pushes", {"type": t}) for t in ("cds", "eds", "lds", "rds")}
        # A new ratings instance: an endpoint-only change for ratings.
        edit(
            mesh.root / "workloads.yaml",
            WORKLOADS + "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
            "metadata: {name: ratings-v2, namespace: default}\n"
            "spec: {address: 127.0.0.14, labels: {app: ratings, version: v2}}\n",
        )
        for c in (a, b):
            got = await c.drain(0.4)
            assert types_of(got) == {"EDS": 1}, types_of(got)
            assert names_of(got[0]) == [cluster("ratings")]
        sent_after = {t: metric(mesh, "pilot_xds_pushes", {"type": t}) for t in sent_before}
        assert {t: sent_after[t] - sent_before[t] for t in sent_before} == {"cds": 0, "eds": 2, "lds": 0, "rds": 0}
        await a.close()
        await b.close()


async def test_change_a_proxy_cannot_see_is_not_sent_to_it_and_reverting_restores_versions(tmp_path: Path) -> None:
    async with control_plane(tmp_path) as mesh:
        scoped, scoped_v = await plain(mesh, CDS, EDS, LDS, RDS)  # Sidecar: egress hosts ./*
        wide, wide_v = await plain(mesh, CDS, EDS, LDS, RDS, **PRODUCTPAGE)  # sees every namespace
        other = mesh.root / "other.yaml"
        edit(other, services(["audit"], namespace="other"))
        got = await wide.drain(0.4)
        assert "CDS" in types_of(got)
        assert "outbound|9080||audit.other.svc.cluster.local" in names_of(next(r for r in got if r.type_url == CDS))
        await scoped.expect_none(0.3)  # nothing it can see changed: nothing re-sent
        for r in got:
            await wide.ack(r, EDS_NAMES if r.type_url == EDS else ["9080"] if r.type_url == RDS else [])
        # Back to the original content: the versions are the original ones again.
        assert mesh.cp.pipeline is not None
        v = mesh.cp.pipeline.state.version
        edit(other, None)
        await mesh.wait_for(lambda s: s.version > v)
        got = await wide.drain(0.4)
        assert {r.type_url: r.version_info for r in got if r.type_url != EDS} == {
            t: wide_v[t] for t in (CDS, LDS, RDS) if t in {r.type_url for r in got}
        }
        assert CDS in {r.type_url for r in got}
        await scoped.expect_none(0.2)
        again, again_v = await plain(mesh, CDS, EDS, LDS, RDS)
        assert again_v == scoped_v
        for c in (scoped, wide, again):
            await c.close()


# --- 4. a stuck client -----------------------------------------------------------------


async def test_stuck_client_neither_delays_others_nor_grows_and_is_closed_after_send_timeout(tmp_path: Path) -> None:
    # The send timeout leaves room for three config changes to converge on the
    # healthy stream while the stuck one is still blocked, even on a busy machine.
    async with control_plane(tmp_path, send_timeout=5.0) as mesh:
        healthy, _ = await plain(mesh, CDS, **PRODUCTPAGE)
        stuck = await gated(mesh, CDS)
        stream = stream_of(mesh, "reviews-v1.default")
        await add_services(mesh, ["extra0"], bulk=True)
        await until(lambda: stream.writing_since > 0, what="the stuck send")
        # Others converge while the stuck send is still blocked.
        for i in range(1, 4):
            r = await healthy.recv_type(CDS, timeout=2)
            assert cluster(f"extra{i - 1}") in names_of(r)
            await healthy.ack(r)
            assert stream.writing_since > 0 and stream.info is not None
            assert stream.info.conn_id in (mesh.cp.xds.streams if mesh.cp.xds else {})
            newest = await add_services(mesh, [f"extra{j}" for j in range(i + 1)], bulk=True)
        # Bounded: one merged pending push, at most one push signal queued.
        assert stream.pending is not None and stream.pending.state.version == newest
        assert stream.events.qsize() <= 1
        # After the send timeout the watchdog closes it, counted as DEADLINE_EXCEEDED.
        await until(
            lambda: not any(s is stream for s in (mesh.cp.xds.streams.values() if mesh.cp.xds else [])),
            timeout=10,
            what="the stuck stream to be closed",
        )
        assert metric(mesh, "pilot_xds_stream_errors", {"code": "DEADLINE_EXCEEDED"}) == 1
        stuck.allow()
        closed = await stuck.wait_closed(3)
        assert closed.code == grpc.StatusCode.DEADLINE_EXCEEDED, closed
        # The healthy stream is untouched and keeps converging.
        r = await healthy.recv_type(CDS, timeout=2)
        assert cluster("extra3") in names_of(r)
        await healthy.ack(r)
        await add_services(mesh, ["extra4"], bulk=True)
        assert cluster("extra4") in names_of(await healthy.recv_type(CDS, timeout=2))
        await healthy.close()
        await stuck.close()


# --- 5. connection recycling -----------------------------------------------------------


async def test_stream_is_recycled_after_max_age_with_ok_and_same_versions_on_reconnect(tmp_path: Path) -> None:
    async with control_plane(tmp_path, max_connection_age=1.5) as mesh:
        c, versions = await plain(mesh, CDS, EDS, LDS, RDS)
        closed = await c.wait_closed(3)
        assert closed.code == grpc.StatusCode.OK, closed
        assert metric(mesh, "pilot_xds_stream_errors", {"code": "DEADLINE_EXCEEDED"}) == 0
        again, again_versions = await plain(mesh, CDS, EDS, LDS, RDS)
        assert again_versions == versions
        await c.close()
        await again.close()


async def test_max_connection_age_is_jittered_ten_percent(tmp_path: Path) -> None:
    async with control_plane(tmp_path, max_connection_age=100.0) as mesh:
        assert mesh.cp.xds is not None
        start = time.monotonic()
        clients = []
        for i in range(20):
            c = await SotwClient(mesh.channel, make_node(ip=f"127.0.8.{i}", name=f"age{i}")).start()
            await c.subscribe(CDS)
            clients.append(c)
        ages = sorted(s.recycle_at - start for s in mesh.cp.xds.streams.values())
        assert len(ages) == 20
        assert ages[0] >= 90.0 and ages[-1] <= 110.5  # connected within the half second after `start`
        assert ages[-1] - ages[0] > 2.0  # spread, not a thundering herd
        for c in clients:
            await c.close()


# --- 6. graceful drain -----------------------------------------------------------------


async def test_stop_finishes_the_push_in_flight_then_closes_streams_with_ok(tmp_path: Path) -> None:
    async with control_plane(tmp_path) as mesh:
        idle, _ = await plain(mesh, CDS, **PRODUCTPAGE)
        busy = await gated(mesh, CDS)
        stream = stream_of(mesh, "reviews-v1.default")
        await add_services(mesh, ["extra0"], bulk=True)
        await until(lambda: stream.writing_since > 0, what="the push in flight")
        r = await idle.recv_type(CDS)
        await idle.ack(r)
        stopping = asyncio.ensure_future(mesh.cp.stop(5.0))
        # An idle stream is closed at once, with OK: Envoy keeps its config and reconnects.
        assert (await idle.wait_closed(2)).code == grpc.StatusCode.OK
        # No new stream is accepted.
        late = await SotwClient(mesh.channel, make_node(ip="127.0.0.9", name="late")).start()
        with contextlib.suppress(grpc.aio.AioRpcError):
            await late.send(CDS)
        assert (await late.wait_closed(2)).code == grpc.StatusCode.UNAVAILABLE
        assert not stopping.done()  # waiting for the push in flight
        busy.allow()
        got = await busy.recv_type(CDS, timeout=3)
        assert cluster("extra0") in names_of(got)  # the push in flight was finished
        assert (await busy.wait_closed(3)).code == grpc.StatusCode.OK
        await asyncio.wait_for(stopping, 3)
        assert metric(mesh, "pilot_xds_stream_errors", {"code": "DEADLINE_EXCEEDED"}) == 0
        for c in (idle, busy, late):
            await c.close()


async def test_stop_cancels_a_stuck_stream_at_the_drain_deadline(tmp_path: Path) -> None:
    async with control_plane(tmp_path) as mesh:
        stuck = await gated(mesh, CDS)
        stream = stream_of(mesh, "reviews-v1.default")
        await add_services(mesh, ["extra0"], bulk=True)
        await until(lambda: stream.writing_since > 0, what="the stuck send")
        began = time.monotonic()
        await asyncio.wait_for(mesh.cp.stop(0.5), 4)
        assert time.monotonic() - began < 3
        assert mesh.cp.xds is not None and not mesh.cp.xds.streams and not mesh.cp.xds.live
        await stuck.close()


async def test_raw_stream_that_never_reads_does_not_grow_the_request_queue(tmp_path: Path) -> None:
    """A client that floods requests while its stream is blocked: the server stops
    reading past a small bound (HTTP/2 flow control pushes back)."""
    async with control_plane(tmp_path, big=True, max_concurrent_pushes=1) as mesh:
        xds = mesh.cp.xds
        assert xds is not None
        channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{mesh.cp.ports['xds']}",
            options=[("grpc.http2.bdp_probe", 0), ("grpc.use_local_subchannel_pool", 1)],
        )
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
        await call.write(discovery_pb2.DiscoveryRequest(type_url=CDS, node=make_node()))
        await until(lambda: len(xds.streams) == 1, what="registration")
        stream = next(iter(xds.streams.values()))
        await until(lambda: stream.writing_since > 0, what="the CDS send to block")  # never read

        async def flood() -> None:
            for i in range(2000):
                await call.write(discovery_pb2.DiscoveryRequest(type_url=RDS, resource_names=[str(i)]))

        flooding = asyncio.ensure_future(flood())
        await asyncio.sleep(0.5)
        assert stream.events.qsize() <= MAX_QUEUED_REQUESTS + 1
        flooding.cancel()
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await flooding
        await channel.close()
