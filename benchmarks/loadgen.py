"""Simulated ADS clients (one OS process runs many), SotW or Delta.

Each client behaves like a sidecar Envoy with INTERCEPTION_MODE NONE: CDS
wildcard, then EDS for the EDS clusters it got, then LDS wildcard, then RDS for
the route names in its HTTP connection managers. Every response is ACKed (SotW:
version + nonce + the same names; Delta: nonce). Only CDS and LDS payloads are
decoded (to learn EDS cluster and route names); EDS/RDS bytes are only searched
for a marker.

Protocol with the driver (benchmarks/run.py), JSON lines:
  stdout  {"event": "ready", "proc": P, "clients": N, "connect_s": ...}
          {"event": "armed", "id": ID}
          {"event": "result", "id": ID, "times": [t_ack or null, ...], "cpu": s}
          {"event": "churn_result", "id": ID, "seen": [[[gen, t], ...] per client], "cpu": s}
          {"event": "stats", ...}
  stdin   {"cmd": "arm", "id": ID, "type": "RDS"|"EDS"|..., "marker": HEX}
          {"cmd": "collect", "id": ID}        report now, complete or not
          {"cmd": "arm_churn", "id": ID, "prefix": HEX}   watch EDS for PREFIX + "A.B"
              (generation A*256+B); per client, record (max generation, t) each time it grows
          {"cmd": "churn_target", "id": ID, "gen": G}   report once every client saw >= G
          {"cmd": "reconnect", "id": ID}      close every stream and channel, reopen them all;
              a "ready" event (with "id") follows once every client has its config again
          {"cmd": "await_ready", "id": ID}    forget readiness (the server is about to be
              restarted); clients reconnect on their own, then "ready" as above
          {"cmd": "stats"} / {"cmd": "quit"}
Streams that fail (server gone) are retried like Envoy does: fresh protocol
state, a short jittered delay, wait_for_ready on the channel.
Times are time.monotonic() (CLOCK_MONOTONIC: one clock for all processes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import sys
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import struct_pb2

CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LDS = "type.googleapis.com/envoy.config.listener.v3.Listener"
RDS = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
SHORT = {CDS: "CDS", EDS: "EDS", LDS: "LDS", RDS: "RDS"}
LONG = {v: k for k, v in SHORT.items()}
HCM = "envoy.filters.network.http_connection_manager"
SOTW_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
DELTA_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"

DiscoveryRequest = discovery_pb2.DiscoveryRequest
DiscoveryResponse = discovery_pb2.DiscoveryResponse
DeltaRequest = discovery_pb2.DeltaDiscoveryRequest
DeltaResponse = discovery_pb2.DeltaDiscoveryResponse


def client_identity(index: int, namespaces: int) -> tuple[str, str, str]:
    ns = f"ns-{index % namespaces}"
    ip = f"10.{200 + (index >> 16) % 50}.{(index >> 8) & 0xFF}.{index & 0xFF}"
    name = f"client-{index}"
    return ns, ip, f"sidecar~{ip}~{name}.{ns}~{ns}.svc.cluster.local"


def make_node(index: int, namespaces: int) -> Any:
    from envoy.config.core.v3 import base_pb2

    ns, _ip, node_id = client_identity(index, namespaces)
    md = struct_pb2.Struct()
    md.update(
        {
            "NAMESPACE": ns,
            "LABELS": {"app": f"client-{index}"},
            "INTERCEPTION_MODE": "NONE",
            "SERVICE_ACCOUNT": "default",
            "WORKLOAD_NAME": f"client-{index}",
        }
    )
    return base_pb2.Node(id=node_id, cluster=f"client.{ns}", metadata=md)


def eds_names_of(cluster_bytes: list[bytes]) -> dict[str, str]:
    """cluster name -> EDS service name, for EDS clusters."""
    out = {}
    for raw in cluster_bytes:
        c = cluster_pb2.Cluster.FromString(raw)
        if c.type == cluster_pb2.Cluster.EDS:
            out[c.name] = c.eds_cluster_config.service_name or c.name
    return out


def route_names_of(listener_bytes: list[bytes]) -> set[str]:
    out = set()
    for raw in listener_bytes:
        lis = listener_pb2.Listener.FromString(raw)
        chains = list(lis.filter_chains)
        if lis.HasField("default_filter_chain"):
            chains.append(lis.default_filter_chain)
        for fc in chains:
            for f in fc.filters:
                if f.name == HCM or f.typed_config.type_url.endswith("HttpConnectionManager"):
                    hcm = http_connection_manager_pb2.HttpConnectionManager.FromString(f.typed_config.value)
                    if hcm.HasField("rds"):
                        out.add(hcm.rds.route_config_name)
    return out


class Watch:
    __slots__ = ("id", "marker", "type_url")

    def __init__(self, wid: str, type_url: str, marker: bytes) -> None:
        self.id, self.type_url, self.marker = wid, type_url, marker


class Client:
    def __init__(self, gen: Loadgen, index: int) -> None:
        self.gen = gen
        self.index = index
        self.node = make_node(index, gen.namespaces)
        self.churn_max = -1
        self.reset()

    def reset(self) -> None:
        """Fresh protocol state, as a newly started Envoy (or one that lost its stream)."""
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.eds: set[str] = set()
        self.routes: set[str] = set()
        self.lds_requested = False
        self.have: set[str] = set()  # types ACKed at least once
        self.ready_at: float | None = None
        self.acks: dict[str, int] = dict.fromkeys(SHORT.values(), 0)
        self.last_ack: dict[str, float] = {}
        self.error: str | None = None
        # SotW per-type last version/nonce
        self.version: dict[str, str] = {}
        self.nonce: dict[str, str] = {}
        # Delta: cluster name -> eds service name
        self.clusters: dict[str, str] = {}
        self.listeners: dict[str, set[str]] = {}
        self.first = True

    def send(self, msg: Any) -> None:
        if self.first:
            msg.node.CopyFrom(self.node)
            self.first = False
        self.queue.put_nowait(msg.SerializeToString())

    async def _requests(self) -> AsyncIterator[bytes]:
        while True:
            item = await self.queue.get()
            if item is None:
                return
            yield item

    async def run(self, channel: grpc.aio.Channel) -> None:
        delta = self.gen.delta
        method = DELTA_METHOD if delta else SOTW_METHOD
        attempt = 0
        while not self.gen.stopping and not self.gen.halting:
            if attempt:
                self.reset()
                self.gen.retries += 1
                await asyncio.sleep(random.uniform(0.05, 0.25))  # jittered, like Envoy's ADS retry
            attempt += 1
            call = channel.stream_stream(method)(self._requests(), wait_for_ready=True)
            if delta:
                self.send(DeltaRequest(type_url=CDS))
            else:
                self.send(DiscoveryRequest(type_url=CDS))
            try:
                async for raw in call:
                    if delta:
                        self._on_delta(raw)
                    else:
                        self._on_sotw(raw)
            except grpc.aio.AioRpcError as e:
                if self.gen.stopping:
                    return
                if not self.gen.retry:
                    self.error = f"{e.code().name}: {e.details()}"
                    self.gen.emit({"event": "client_error", "client": self.index, "error": self.error})
                    return
            finally:
                call.cancel()

    def _acked(self, t: str, raw: bytes, now: float) -> None:
        # `now`: when the response was decoded, before the ACK was built (the
        # proxy has the config then; the ACK is the client's cost).
        short = SHORT[t]
        self.acks[short] += 1
        self.last_ack[short] = now
        self.have.add(short)
        self.gen.observe(self, t, raw, now)
        if self.ready_at is None and self._initial_complete():
            self.ready_at = now
            self.gen.client_ready(self)

    def _initial_complete(self) -> bool:
        need = {"CDS", "LDS"}
        if self.eds:
            need.add("EDS")
        if self.routes:
            need.add("RDS")
        return self.lds_requested and need <= self.have

    # --- SotW -------------------------------------------------------------

    def _on_sotw(self, raw: bytes) -> None:
        resp = DiscoveryResponse.FromString(raw)
        now = time.monotonic()
        t = resp.type_url
        self.version[t], self.nonce[t] = resp.version_info, resp.nonce
        if t == CDS:
            eds = set(eds_names_of([a.value for a in resp.resources]).values())
            self._ack_sotw(t, [])
            if eds != self.eds:
                self.eds = eds
                self._ack_sotw(EDS, sorted(eds))
            if not self.lds_requested:
                self.lds_requested = True
                self.send(DiscoveryRequest(type_url=LDS))
        elif t == LDS:
            routes = route_names_of([a.value for a in resp.resources])
            self._ack_sotw(t, [])
            if routes != self.routes:
                self.routes = routes
                self._ack_sotw(RDS, sorted(routes))
        elif t == EDS:
            self._ack_sotw(t, sorted(self.eds))
        elif t == RDS:
            self._ack_sotw(t, sorted(self.routes))
        self._acked(t, raw, now)

    def _ack_sotw(self, t: str, names: list[str]) -> None:
        self.send(
            DiscoveryRequest(
                type_url=t,
                version_info=self.version.get(t, ""),
                response_nonce=self.nonce.get(t, ""),
                resource_names=names,
            )
        )

    # --- Delta ------------------------------------------------------------

    def _on_delta(self, raw: bytes) -> None:
        resp = DeltaResponse.FromString(raw)
        now = time.monotonic()
        t = resp.type_url
        self.send(DeltaRequest(type_url=t, response_nonce=resp.nonce))
        if t == CDS:
            for n in resp.removed_resources:
                self.clusters.pop(n, None)
            for r in resp.resources:
                self.clusters.pop(r.name, None)
            self.clusters.update(eds_names_of([r.resource.value for r in resp.resources]))
            eds = set(self.clusters.values())
            sub, unsub = eds - self.eds, self.eds - eds
            self.eds = eds
            if sub or unsub:
                self.send(
                    DeltaRequest(
                        type_url=EDS, resource_names_subscribe=sorted(sub), resource_names_unsubscribe=sorted(unsub)
                    )
                )
            if not self.lds_requested:
                self.lds_requested = True
                self.send(DeltaRequest(type_url=LDS))
        elif t == LDS:
            for n in resp.removed_resources:
                self.listeners.pop(n, None)
            for r in resp.resources:
                self.listeners[r.name] = route_names_of([r.resource.value])
            routes = set().union(*self.listeners.values()) if self.listeners else set()
            sub, unsub = routes - self.routes, self.routes - routes
            self.routes = routes
            if sub or unsub:
                self.send(
                    DeltaRequest(
                        type_url=RDS, resource_names_subscribe=sorted(sub), resource_names_unsubscribe=sorted(unsub)
                    )
                )
        self._acked(t, raw, now)


class Loadgen:
    def __init__(self, args: argparse.Namespace) -> None:
        self.server = args.server
        self.delta = args.transport == "delta"
        self.namespaces = args.namespaces
        self.proc = args.proc
        self.clients = [Client(self, i) for i in range(args.first, args.first + args.count)]
        self.per_channel = max(1, args.streams_per_channel)
        self.watches: dict[str, Watch] = {}  # type_url -> active watch
        self.results: dict[str, dict[int, float]] = {}
        self.ready = 0
        self.stopping = False
        self.t_start = time.monotonic()
        self.out_lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.responses: dict[str, int] = dict.fromkeys(SHORT.values(), 0)
        self.bytes = 0
        self.retry = args.retry
        self.halting = False
        self.retries = 0
        self.ready_id: str | None = None
        self.phase_start = self.t_start
        self.channels: list[grpc.aio.Channel] = []
        self.tasks: list[asyncio.Task[None]] = []
        # churn watch: id, EDS prefix (e.g. b"10.240."), target generation, per-client [(gen, t)]
        self.churn_id: str | None = None
        self.churn_prefix = b""
        self.churn_target: int | None = None
        self.churn_seen: dict[int, list[tuple[int, float]]] = {}
        self.churn_done = 0

    def emit(self, obj: dict[str, Any]) -> None:
        with self.out_lock:
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()

    def client_ready(self, c: Client) -> None:
        self.ready += 1
        if self.ready == len(self.clients):
            self.emit(
                {
                    "event": "ready",
                    "id": self.ready_id,
                    "proc": self.proc,
                    "clients": len(self.clients),
                    "retries": self.retries,
                    "connect_s": time.monotonic() - self.phase_start,
                    "first_ready": min(x.ready_at or 0 for x in self.clients),
                    "last_ready": max(x.ready_at or 0 for x in self.clients),
                    "times": [x.ready_at for x in self.clients] if self.ready_id else None,
                    "cpu": time.process_time(),
                }
            )

    _GEN = re.compile(rb"(\d+)\.(\d+)")

    def _churn(self, c: Client, raw: bytes, now: float) -> None:
        prefix, best = self.churn_prefix, -1
        pos = raw.find(prefix)
        while pos >= 0:
            m = self._GEN.match(raw, pos + len(prefix))
            if m:
                best = max(best, int(m.group(1)) * 256 + int(m.group(2)))
            pos = raw.find(prefix, pos + 1)
        if best > c.churn_max:
            c.churn_max = best
            self.churn_seen[c.index].append((best, now))
            if self.churn_target is not None and best >= self.churn_target:
                self.churn_done += 1
                if self.churn_done == len(self.clients):
                    self._report_churn()

    def _report_churn(self) -> None:
        if self.churn_id is None:
            return
        self.emit(
            {
                "event": "churn_result",
                "proc": self.proc,
                "id": self.churn_id,
                "seen": [self.churn_seen[c.index] for c in self.clients],
                "cpu": time.process_time(),
            }
        )
        self.churn_id = None

    def observe(self, c: Client, t: str, raw: bytes, now: float) -> None:
        self.responses[SHORT[t]] += 1
        self.bytes += len(raw)
        if self.churn_id is not None and t == EDS:
            self._churn(c, raw, now)
        w = self.watches.get(t)
        if w is None:
            return
        got = self.results[w.id]
        if c.index in got or w.marker not in raw:
            return
        got[c.index] = now
        if len(got) == len(self.clients):
            self._report(w.id)

    def _report(self, wid: str) -> None:
        got = self.results.get(wid, {})
        for t, w in list(self.watches.items()):
            if w.id == wid:
                del self.watches[t]
        self.emit(
            {
                "event": "result",
                "proc": self.proc,
                "id": wid,
                "times": [got.get(c.index) for c in self.clients],
                "cpu": time.process_time(),
            }
        )

    def on_command(self, line: str) -> None:
        cmd = json.loads(line)
        op = cmd.get("cmd")
        if op == "arm":
            t = LONG[cmd["type"]]
            self.watches[t] = Watch(cmd["id"], t, bytes.fromhex(cmd["marker"]))
            self.results[cmd["id"]] = {}
            self.emit({"event": "armed", "proc": self.proc, "id": cmd["id"], "cpu": time.process_time()})
        elif op == "collect":
            if any(w.id == cmd["id"] for w in self.watches.values()):
                self._report(cmd["id"])
        elif op == "arm_churn":
            self.churn_id = cmd["id"]
            self.churn_prefix = bytes.fromhex(cmd["prefix"])
            self.churn_target = None
            self.churn_done = 0
            self.churn_seen = {c.index: [] for c in self.clients}
            for c in self.clients:
                c.churn_max = -1
            self.emit({"event": "armed", "proc": self.proc, "id": cmd["id"], "cpu": time.process_time()})
        elif op == "churn_target":
            if self.churn_id == cmd["id"]:
                self.churn_target = int(cmd["gen"])
                self.churn_done = sum(1 for c in self.clients if c.churn_max >= self.churn_target)
                if self.churn_done == len(self.clients):
                    self._report_churn()
        elif op == "collect_churn":
            if self.churn_id == cmd["id"]:
                self._report_churn()
        elif op == "reconnect":
            self._forget_ready(cmd["id"])
            assert self.loop is not None
            self.loop.create_task(self._reconnect_all())
        elif op == "await_ready":
            self._forget_ready(cmd["id"])
        elif op == "stats":
            self.emit(
                {
                    "event": "stats",
                    "proc": self.proc,
                    "cpu": time.process_time(),
                    "ready": self.ready,
                    "retries": self.retries,
                    "errors": sum(1 for c in self.clients if c.error),
                    "responses": self.responses,
                    "bytes": self.bytes,
                }
            )
        elif op == "quit":
            self.stopping = True
            assert self.loop is not None
            for c in self.clients:
                c.queue.put_nowait(None)
            self.loop.call_later(0.5, self.loop.stop)

    def _stdin_thread(self) -> None:
        assert self.loop is not None
        for line in sys.stdin:
            if line.strip():
                self.loop.call_soon_threadsafe(self.on_command, line)
        self.loop.call_soon_threadsafe(self.on_command, '{"cmd": "quit"}')

    def _forget_ready(self, rid: str) -> None:
        self.ready_id = rid
        self.ready = 0
        self.phase_start = time.monotonic()
        for c in self.clients:
            c.ready_at = None
            c.have = set()  # ready again only after fresh ACKs of every type

    async def _connect_all(self) -> None:
        opts = [
            ("grpc.use_local_subchannel_pool", 1),  # one TCP connection per channel, like one Envoy each
            ("grpc.max_receive_message_length", 256 * 1024 * 1024),
            # reconnect to a restarted server about as fast as Envoy would
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.min_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ]
        self.channels, self.tasks = [], []
        for i, c in enumerate(self.clients):
            if i % self.per_channel == 0:
                self.channels.append(grpc.aio.insecure_channel(self.server, options=opts))
            self.tasks.append(asyncio.create_task(c.run(self.channels[-1])))
            if i % 50 == 49:
                await asyncio.sleep(0)  # let earlier streams get going

    async def _reconnect_all(self) -> None:
        """Every client drops its stream and TCP connection at once, then all reconnect."""
        self.halting = True
        for c in self.clients:
            c.queue.put_nowait(None)  # end each request stream first: cancelling a call
        await asyncio.sleep(0.1)  # while grpc is inside its request generator is noisy
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.gather(*(ch.close() for ch in self.channels), return_exceptions=True)
        for c in self.clients:
            c.reset()
        self.halting = False
        await self._connect_all()

    async def main(self) -> None:
        self.loop = asyncio.get_running_loop()
        threading.Thread(target=self._stdin_thread, daemon=True).start()
        await self._connect_all()
        while not self.stopping:
            await asyncio.sleep(3600)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", required=True, help="HOST:PORT of the plaintext xDS port")
    ap.add_argument("--first", type=int, default=0, help="index of the first client")
    ap.add_argument("--count", type=int, default=250)
    ap.add_argument("--transport", choices=["sotw", "delta"], default="sotw")
    ap.add_argument("--namespaces", type=int, default=10)
    ap.add_argument("--streams-per-channel", type=int, default=1)
    ap.add_argument("--proc", type=int, default=0)
    ap.add_argument("--no-retry", dest="retry", action="store_false", help="report stream errors, do not reconnect")
    args = ap.parse_args()
    gen = Loadgen(args)
    with contextlib.suppress(RuntimeError):  # loop stopped by "quit"
        asyncio.run(gen.main())


if __name__ == "__main__":
    main()
