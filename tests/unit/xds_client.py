"""A small ADS client for protocol tests (a real gRPC stream, no mocks), and a
running control plane on a small config directory to drive it against.

A background task reads responses into a queue, so a test can wait for the next
response with a timeout (or assert that none arrives) without cancelling a
pending gRPC read, which would cancel the whole call.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import struct_pb2
from google.rpc import status_pb2

from istiod_py.model import MeshState
from istiod_py.server import ControlPlane, ServeOptions
from istiod_py.xds.types import TypeUrl

CDS = TypeUrl.CLUSTER
EDS = TypeUrl.ENDPOINT
LDS = TypeUrl.LISTENER
RDS = TypeUrl.ROUTE
SHORT = TypeUrl.SHORT


def make_node(
    ip: str = "127.0.0.11",
    name: str = "reviews-v1",
    namespace: str = "default",
    labels: Mapping[str, str] | None = None,
) -> base_pb2.Node:
    md = struct_pb2.Struct()
    md.update(
        {
            "NAMESPACE": namespace,
            "LABELS": dict(labels if labels is not None else {"app": "reviews", "version": "v1"}),
            "INTERCEPTION_MODE": "NONE",
        }
    )
    return base_pb2.Node(
        id=f"sidecar~{ip}~{name}.{namespace}~{namespace}.svc.cluster.local",
        cluster=f"{name}.{namespace}",
        metadata=md,
    )


class StreamClosed(Exception):
    """The server ended the stream (`code` is its gRPC status)."""

    def __init__(self, code: grpc.StatusCode | None, details: str | None) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details


class _Base:
    def __init__(self, channel: grpc.aio.Channel, node: base_pb2.Node | None) -> None:
        self.stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        self.node = node
        self._node_sent = False
        self.call: Any = None
        self.responses: asyncio.Queue[Any] = asyncio.Queue()
        self.closed: StreamClosed | None = None
        self._reader: asyncio.Task[None] | None = None

    def _start(self, call: Any) -> None:
        self.call = call
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
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

    def _take_node(self, req: Any) -> None:
        if not self._node_sent and self.node is not None:
            req.node.CopyFrom(self.node)
        self._node_sent = True

    async def recv(self, timeout: float = 2.0) -> Any:
        """The next response; raises StreamClosed if the stream ended instead."""
        msg = await asyncio.wait_for(self.responses.get(), timeout)
        if isinstance(msg, StreamClosed):
            await self.responses.put(msg)  # keep reporting it
            raise msg
        return msg

    async def recv_type(self, type_url: str, timeout: float = 2.0) -> Any:
        msg = await self.recv(timeout)
        assert msg.type_url == type_url, f"expected {SHORT[type_url]}, got {SHORT.get(msg.type_url)}"
        return msg

    async def expect_none(self, timeout: float = 0.5) -> None:
        """Asserts no response arrives within `timeout` seconds."""
        try:
            msg = await asyncio.wait_for(self.responses.get(), timeout)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected response: {_describe(msg)}")

    async def drain(self, quiet: float = 0.3) -> list[Any]:
        """Every response until none arrives for `quiet` seconds."""
        out = []
        while True:
            try:
                out.append(await self.recv(quiet))
            except TimeoutError:
                return out

    async def wait_closed(self, timeout: float = 2.0) -> StreamClosed:
        while True:
            msg = await asyncio.wait_for(self.responses.get(), timeout)
            if isinstance(msg, StreamClosed):
                return msg

    async def close(self) -> None:
        if self.call is not None:
            with contextlib.suppress(Exception):
                await self.call.done_writing()
            self.call.cancel()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader


def _describe(msg: Any) -> str:
    if isinstance(msg, StreamClosed):
        return f"stream closed {msg}"
    names = [r.name for r in getattr(msg, "resources", [])]
    return f"{SHORT.get(msg.type_url, msg.type_url)} names={names}"


def names_of(resp: discovery_pb2.DiscoveryResponse) -> list[str]:
    """Resource names of a SotW response (decoded from the Any payloads)."""
    cls = TypeUrl.message_class(resp.type_url)
    field = "cluster_name" if resp.type_url == EDS else "name"
    return sorted(getattr(cls.FromString(a.value), field) for a in resp.resources)


def error(message: str = "rejected by test") -> status_pb2.Status:
    return status_pb2.Status(code=3, message=message)


class SotwClient(_Base):
    """StreamAggregatedResources."""

    async def start(self) -> SotwClient:
        self._start(self.stub.StreamAggregatedResources())
        return self

    async def send(
        self,
        type_url: str,
        names: Iterable[str] = (),
        *,
        version: str = "",
        nonce: str = "",
        err: status_pb2.Status | None = None,
    ) -> None:
        req = discovery_pb2.DiscoveryRequest(
            type_url=type_url, resource_names=list(names), version_info=version, response_nonce=nonce
        )
        if err is not None:
            req.error_detail.CopyFrom(err)
        self._take_node(req)
        await self.call.write(req)

    async def ack(self, resp: discovery_pb2.DiscoveryResponse, names: Iterable[str] = ()) -> None:
        await self.send(resp.type_url, names, version=resp.version_info, nonce=resp.nonce)

    async def nack(self, resp: discovery_pb2.DiscoveryResponse, acked_version: str, names: Iterable[str] = ()) -> None:
        """A NACK carries the last *accepted* version and the rejected response's nonce."""
        await self.send(resp.type_url, names, version=acked_version, nonce=resp.nonce, err=error("bad config (test)"))

    async def subscribe(self, type_url: str, names: Iterable[str] = ()) -> discovery_pb2.DiscoveryResponse:
        """Initial request for a type, answered by one response (returned, not ACKed)."""
        await self.send(type_url, names)
        return await self.recv_type(type_url)


class DeltaClient(_Base):
    """DeltaAggregatedResources."""

    async def start(self) -> DeltaClient:
        self._start(self.stub.DeltaAggregatedResources())
        return self

    async def send(
        self,
        type_url: str,
        subscribe: Iterable[str] = (),
        unsubscribe: Iterable[str] = (),
        *,
        nonce: str = "",
        initial_versions: Mapping[str, str] | None = None,
        err: status_pb2.Status | None = None,
    ) -> None:
        req = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url,
            resource_names_subscribe=list(subscribe),
            resource_names_unsubscribe=list(unsubscribe),
            response_nonce=nonce,
        )
        for k, v in (initial_versions or {}).items():
            req.initial_resource_versions[k] = v
        if err is not None:
            req.error_detail.CopyFrom(err)
        self._take_node(req)
        await self.call.write(req)

    async def ack(self, resp: discovery_pb2.DeltaDiscoveryResponse) -> None:
        await self.send(resp.type_url, nonce=resp.nonce)

    async def nack(self, resp: discovery_pb2.DeltaDiscoveryResponse) -> None:
        await self.send(resp.type_url, nonce=resp.nonce, err=error("bad delta config (test)"))


def delta_versions(resp: discovery_pb2.DeltaDiscoveryResponse) -> dict[str, str]:
    return {r.name: r.version for r in resp.resources}


# --- a running control plane ------------------------------------------------------
# The mesh is the demo's bookinfo shape: productpage, reviews (v1, v2) and ratings,
# one WorkloadEntry per instance, a reviews DestinationRule + VirtualService, and a
# Sidecar (captureMode NONE) for reviews-v1.

SERVICES = """\
apiVersion: v1
kind: Service
metadata: {name: productpage, namespace: default}
spec:
  selector: {app: productpage}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: default}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}]
"""

WORKLOADS = """\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: productpage-v1, namespace: default}
spec: {address: 127.0.0.10, labels: {app: productpage, version: v1}, serviceAccount: bookinfo-productpage}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: default}
spec: {address: 127.0.0.11, labels: {app: reviews, version: v1}, serviceAccount: bookinfo-reviews}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v2, namespace: default}
spec: {address: 127.0.0.12, labels: {app: reviews, version: v2}, serviceAccount: bookinfo-reviews}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ratings-v1, namespace: default}
spec: {address: 127.0.0.13, labels: {app: ratings, version: v1}, serviceAccount: bookinfo-ratings}
"""

ROUTING = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 80}
    - {destination: {host: reviews, subset: v2}, weight: 20}
"""

SIDECARS = """\
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews-v1, namespace: default}
spec:
  workloadSelector: {labels: {app: reviews, version: v1}}
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.1.11:9080
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    bind: 127.0.2.11
    captureMode: NONE
    hosts: ["./*"]
"""

FILES = {
    "services.yaml": SERVICES,
    "workloads.yaml": WORKLOADS,
    "routing.yaml": ROUTING,
    "sidecars.yaml": SIDECARS,
}

HOST = "{}.default.svc.cluster.local"


def cluster(svc: str, subset: str = "", port: int = 9080) -> str:
    return f"outbound|{port}|{subset}|{HOST.format(svc)}"


def write_config(root: Path, files: dict[str, str] | None = None) -> None:
    for name, text in (files or FILES).items():
        (root / name).write_text(text)


_bump = [time.time_ns()]


def edit(path: Path, text: str | None) -> None:
    """Write (or with None, delete) a watched file so the poller surely sees it:
    the mtime moves forward even on a coarse-grained filesystem clock."""
    if text is None:
        path.unlink()
        return
    path.write_text(text)
    _bump[0] = max(_bump[0] + 1_000_000, time.time_ns())
    os.utime(path, ns=(_bump[0], _bump[0]))


def options(config_dir: Path) -> ServeOptions:
    return ServeOptions(
        config_dir=str(config_dir),
        xds_port=0,
        debug_port=0,
        enable_ca=False,
        debounce_quiet=0.02,
        poll_interval=0.05,
        max_connection_age=0.0,
    )


class Mesh:
    def __init__(self, root: Path, cp: ControlPlane, channel: grpc.aio.Channel) -> None:
        self.root = root
        self.cp = cp
        self.channel = channel

    @property
    def debug_url(self) -> str:
        return f"http://127.0.0.1:{self.cp.ports['debug']}"

    async def get_json(self, path: str) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.debug_url + path, timeout=aiohttp.ClientTimeout(total=3)) as resp,
        ):
            assert resp.status == 200, f"{path}: HTTP {resp.status}: {await resp.text()}"
            assert resp.content_type == "application/json", f"{path}: {resp.content_type}"
            return await resp.json()

    async def get_text(self, path: str) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.debug_url + path, timeout=aiohttp.ClientTimeout(total=3)) as resp,
        ):
            return resp.status, await resp.text()

    async def syncz(self, proxy_id: str = "reviews-v1.default") -> dict[str, Any]:
        for entry in await self.get_json("/debug/syncz"):
            if entry["proxy"] == proxy_id:
                return dict(entry)
        raise AssertionError(f"{proxy_id} not in /debug/syncz")

    async def wait_for(self, predicate: Callable[[MeshState], bool], timeout: float = 2.0) -> None:
        """Waits until the pipeline's current state satisfies `predicate`."""
        assert self.cp.pipeline is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self.cp.pipeline.state):
            if loop.time() > deadline:
                raise AssertionError(f"state v{self.cp.pipeline.state.version} never matched")
            await asyncio.sleep(0.02)


@asynccontextmanager
async def running_mesh(root: Path, **overrides: Any) -> AsyncIterator[Mesh]:
    opts = options(root)
    for k, v in overrides.items():
        setattr(opts, k, v)
    cp = ControlPlane(opts)
    await cp.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{cp.ports['xds']}")
    try:
        yield Mesh(root, cp, channel)
    finally:
        await channel.close()
        await cp.stop(0)
