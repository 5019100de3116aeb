"""Fuzzing the ADS request handler (issue 9) against the real in-process server.

Arbitrary bytes, and structurally valid but odd DiscoveryRequests and
DeltaDiscoveryRequests (random type URLs, names, nonces, versions, error
details, huge name lists, fields encoded in any order), are sent on real gRPC
streams. For every example:

- the server answers, or ends the stream with a proper status: INVALID_ARGUMENT
  naming what was wrong, never INTERNAL/UNKNOWN (a crash);
- a stream whose requests all name a served type after a valid node is never
  closed (the bug of issue 9: a valid SotW stream closed as unknown type_url '');
- every request is handled: a final request that must be answered is answered;
- when the stream ends, its server task ends too (no leaked task or stream);
- other streams keep working.

The control plane runs on an event loop thread of its own for the whole module;
each hypothesis example drives it from the test thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2
from hypothesis import given
from hypothesis import strategies as st

from istiod_py.server import ControlPlane
from istiod_py.xds.types import TypeUrl
from istiod_py.xds.wire import names_digest
from tests.support.upstreams import LoopThread
from tests.unit.xds_client import CDS, EDS, Mesh, SotwClient, cluster, make_node, options, write_config

pytestmark = pytest.mark.timeout(240)

SERVICE = "/envoy.service.discovery.v3.AggregatedDiscoveryService/"
KNOWN = list(TypeUrl.PUSH_ORDER)
REAL_NAMES = [cluster("reviews"), cluster("ratings"), cluster("reviews", "v1"), "9080", "127.0.0.11_9080", "*", ""]
LAST = "\0last"  # stands for the nonce/version of the last response of the type


def _identity(b: bytes) -> bytes:
    return b


# --- a control plane on a loop thread, for the whole module ------------------------


@dataclass
class Served:
    loop: LoopThread
    mesh: Mesh
    healthy: SotwClient
    baseline_tasks: int = 0
    examples: dict[str, int] = field(default_factory=dict)

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        return self.loop.run(coro, timeout)


async def _start(root: Path) -> tuple[Mesh, SotwClient]:
    cp = ControlPlane(options(root))
    await cp.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{cp.ports['xds']}")
    mesh = Mesh(root, cp, channel)
    healthy = await SotwClient(channel, make_node(ip="127.0.0.10", name="productpage-v1")).start()
    r = await healthy.subscribe(CDS)
    await healthy.ack(r)
    return mesh, healthy


async def _stop(mesh: Mesh, healthy: SotwClient) -> None:
    await healthy.close()
    await mesh.channel.close()
    await mesh.cp.stop(0)


async def _task_count() -> int:
    return len(asyncio.all_tasks())


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    loop = LoopThread("xds-fuzz")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_config(root)
        mesh, healthy = loop.run(_start(root), timeout=30)
        s = Served(loop, mesh, healthy)
        s.baseline_tasks = s.run(_task_count())
        try:
            yield s
        finally:
            loop.run(_stop(mesh, healthy), timeout=30)
            loop.close()
            print(f"\nxDS fuzz examples run: {s.examples}")


# --- a raw client stream -------------------------------------------------------------


class RawStream:
    """A stream of raw request bytes; responses are decoded as `resp_cls`."""

    def __init__(self, mesh: Mesh, delta: bool) -> None:
        method = "DeltaAggregatedResources" if delta else "StreamAggregatedResources"
        self.resp_cls: Any = discovery_pb2.DeltaDiscoveryResponse if delta else discovery_pb2.DiscoveryResponse
        self.call = mesh.channel.stream_stream(
            SERVICE + method, request_serializer=_identity, response_deserializer=_identity
        )()
        self.responses: list[Any] = []
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self._arrived = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                msg = await self.call.read()
                if msg is grpc.aio.EOF:
                    self.code, self.details = await self.call.code(), await self.call.details() or ""
                    return
                self.responses.append(self.resp_cls.FromString(msg))
                self._arrived.set()
        except grpc.aio.AioRpcError as e:
            self.code, self.details = e.code(), e.details() or ""
        finally:
            self._arrived.set()

    @property
    def closed(self) -> bool:
        return self._reader.done()

    async def send(self, raw: bytes) -> None:
        if not self.closed:
            # ended meanwhile: the reader has its status
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
                await self.call.write(raw)

    async def settle(self, quiet: float = 0.02) -> None:
        """Until no response arrives for `quiet` seconds (or the stream ends)."""
        while not self.closed:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), quiet)
            except TimeoutError:
                return

    async def wait_for(self, pred: Any, timeout: float = 5.0) -> bool:
        """Until some response satisfies `pred`: True, or False if the stream ended."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if any(pred(r) for r in self.responses):
                return True
            if self.closed:
                return False
            self._arrived.clear()
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError("the server neither answered the final request nor closed the stream")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)

    async def close(self) -> None:
        self.call.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


async def _after_example(s: Served) -> None:
    """Every stream of the example is gone from the server, its tasks ended, and
    the long-lived healthy stream still answers."""
    xds = s.mesh.cp.xds
    assert xds is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while len(xds.live) > 1 or len(asyncio.all_tasks()) > s.baseline_tasks + 1:  # +1: this coroutine
        if loop.time() > deadline:
            raise AssertionError(
                f"leak: {len(xds.live)} live streams (1 expected), "
                f"{len(asyncio.all_tasks())} tasks ({s.baseline_tasks + 1} expected)"
            )
        await asyncio.sleep(0.01)
    # The healthy stream answers a new subscription (then returns to wildcard).
    h = s.healthy
    got = await h.subscribe(EDS, [cluster("ratings")])
    assert got.resources, "the healthy stream stopped answering"
    await h.ack(got, [cluster("ratings")])


def _stream_errors(s: Served) -> dict[str, float]:
    """Streams the server closed with an error so far, by status code."""
    assert s.mesh.cp.xds is not None
    out: dict[str, float] = {}
    for metric in s.mesh.cp.xds.metrics.registry.collect():
        for sample in metric.samples:
            if sample.name == "pilot_xds_stream_errors":  # istiod-style bare counter name
                out[sample.labels["code"]] = sample.value
    return out


def _check_status(s: Served, stream: RawStream, errors_before: dict[str, float]) -> None:
    """The server ended the stream, if it did, with INVALID_ARGUMENT and a reason:
    never a crash (UNKNOWN: an exception escaped the handler) nor INTERNAL."""
    after = _stream_errors(s)
    new = {code: n - errors_before.get(code, 0) for code, n in after.items() if n != errors_before.get(code, 0)}
    assert set(new) <= {"INVALID_ARGUMENT"}, f"the server closed streams with {new}"
    if stream.code is None or stream.code == grpc.StatusCode.CANCELLED:
        return
    if stream.code == grpc.StatusCode.INVALID_ARGUMENT:
        assert stream.details, "an INVALID_ARGUMENT must say what was wrong"
        return
    # A write racing the server's close fails in the client's gRPC core, which
    # then reports its own INTERNAL; the server's status is in its metrics.
    assert stream.code == grpc.StatusCode.INTERNAL and "from Core" in stream.details, (
        f"stream ended with {stream.code}: {stream.details}"
    )
    assert new == {"INVALID_ARGUMENT": 1}, f"client saw {stream.code} {stream.details}; server closed {new}"


# --- arbitrary bytes -------------------------------------------------------------------


async def _bytes_example(s: Served, delta: bool, register: bool, payloads: list[bytes]) -> None:
    errors_before = _stream_errors(s)
    stream = RawStream(s.mesh, delta)
    try:
        if register:
            node = make_node(ip="127.0.0.11")
            first: Any = (
                discovery_pb2.DeltaDiscoveryRequest(node=node, type_url=CDS)
                if delta
                else discovery_pb2.DiscoveryRequest(node=node, type_url=CDS)
            )
            await stream.send(first.SerializeToString())
            assert await stream.wait_for(lambda r: r.type_url == CDS), f"{stream.code}: {stream.details}"
        for raw in payloads:
            await stream.send(raw)
        await stream.send(_sentinel(delta, marker := uuid.uuid4().hex, node=not register))
        await stream.wait_for(_answers_sentinel(delta, marker))  # answered, or the stream ended
        _check_status(s, stream, errors_before)
    finally:
        await stream.close()
    await _after_example(s)


@given(delta=st.booleans(), register=st.booleans(), payloads=st.lists(st.binary(max_size=300), max_size=4))
def test_arbitrary_bytes(served: Served, delta: bool, register: bool, payloads: list[bytes]) -> None:
    served.examples["bytes"] = served.examples.get("bytes", 0) + 1
    served.run(_bytes_example(served, delta, register, payloads))


# --- odd but well-formed requests -------------------------------------------------------

type_urls = st.one_of(
    st.sampled_from(KNOWN),
    st.sampled_from(KNOWN).map(lambda t: t + "2"),
    st.sampled_from(["", "type.googleapis.com/", "*"]),
    st.text(max_size=30),
)
small_names = st.lists(st.one_of(st.sampled_from(REAL_NAMES), st.text(max_size=40)), max_size=12)
huge_names = st.integers(500, 4000).map(lambda n: [f"outbound|80||host-{i}.ns.svc.cluster.local" for i in range(n)])
names = st.one_of(small_names, small_names, small_names, huge_names)
tokens = st.one_of(st.just(""), st.just(LAST), st.just(LAST), st.text(max_size=20))
errors = st.one_of(st.none(), st.none(), st.text(max_size=300), st.just("x" * 20000))


@dataclass
class Step:
    type_url: str
    names: list[str]
    unsubscribe: list[str]
    version: str
    nonce: str
    error: str | None
    order: list[int]  # field order on the wire (any order is valid protobuf)
    node: bool  # repeat the node (Envoy does unless set_node_on_first_message_only)


steps = st.builds(
    Step,
    type_url=type_urls,
    names=names,
    unsubscribe=small_names,
    version=tokens,
    nonce=tokens,
    error=errors,
    order=st.permutations(list(range(7))),
    node=st.booleans(),
)
nodes = st.one_of(
    st.just("valid"),
    st.just("valid"),
    st.just("valid"),
    st.just("none"),
    st.text(max_size=60),
)


def _encode(delta: bool, step: Step, node: base_pb2.Node | None, last: dict[str, Any]) -> bytes:
    prev = last.get(step.type_url)
    nonce = (prev.nonce if prev is not None else "") if step.nonce == LAST else step.nonce
    version = (getattr(prev, "version_info", "") if prev is not None else "") if step.version == LAST else step.version
    parts: list[Any] = []
    if delta:
        Req: Any = discovery_pb2.DeltaDiscoveryRequest
        parts = [
            Req(node=node) if node is not None else None,
            Req(type_url=step.type_url),
            Req(resource_names_subscribe=step.names),
            Req(resource_names_unsubscribe=step.unsubscribe),
            Req(initial_resource_versions={n: version for n in step.unsubscribe[:3]}) if version else None,
            Req(response_nonce=nonce),
            Req(error_detail=status_pb2.Status(code=13, message=step.error)) if step.error is not None else None,
        ]
    else:
        Req = discovery_pb2.DiscoveryRequest
        parts = [
            Req(version_info=version),
            Req(node=node) if node is not None else None,
            Req(resource_names=step.names),
            Req(type_url=step.type_url),
            Req(response_nonce=nonce),
            Req(error_detail=status_pb2.Status(code=13, message=step.error)) if step.error is not None else None,
            None,
        ]
    return b"".join(parts[i].SerializeToString() for i in step.order if parts[i] is not None)


def _sentinel(delta: bool, marker: str, node: bool = False) -> bytes:
    """A request every open stream must answer: an EDS name nobody has."""
    n = make_node(ip="127.0.0.11") if node else None
    if delta:
        return discovery_pb2.DeltaDiscoveryRequest(
            node=n, type_url=EDS, resource_names_subscribe=[marker]
        ).SerializeToString()
    return discovery_pb2.DiscoveryRequest(node=n, type_url=EDS, resource_names=[marker]).SerializeToString()


def _answers_sentinel(delta: bool, marker: str) -> Any:
    if delta:
        return lambda r: r.type_url == EDS and marker in r.removed_resources
    suffix = "-" + names_digest([marker])
    return lambda r: r.type_url == EDS and r.version_info.endswith(suffix)


async def _requests_example(s: Served, delta: bool, node_kind: str, plan: list[Step]) -> None:
    if node_kind == "valid":
        node: base_pb2.Node | None = make_node(ip="127.0.0.11")
    elif node_kind == "none":
        node = None
    else:
        node = base_pb2.Node(id=node_kind)
    valid = node_kind == "valid" and all(TypeUrl.known(st.type_url) for st in plan)
    errors_before = _stream_errors(s)
    stream = RawStream(s.mesh, delta)
    last: dict[str, Any] = {}
    try:
        for i, step in enumerate(plan):
            await stream.send(_encode(delta, step, node if (i == 0 or step.node) else None, last))
            await stream.settle()
            for r in stream.responses:
                last[r.type_url] = r
            if stream.closed:
                break
        marker = uuid.uuid4().hex
        await stream.send(_sentinel(delta, marker, node=not plan))
        answered = await stream.wait_for(_answers_sentinel(delta, marker))
        if valid:
            assert answered, f"a valid stream was closed: {stream.code}: {stream.details}"
            # The first request of a type is always answered, whatever nonce it
            # carries (one from an earlier stream, after a reconnect): as istiod.
            answered_types = {r.type_url for r in stream.responses}
            asked = {step.type_url for step in plan}
            assert asked <= answered_types, f"never answered: {asked - answered_types}"
        _check_status(s, stream, errors_before)
    finally:
        await stream.close()
    await _after_example(s)


@given(delta=st.booleans(), node_kind=nodes, plan=st.lists(steps, max_size=6))
def test_odd_requests(served: Served, delta: bool, node_kind: str, plan: list[Step]) -> None:
    served.examples["requests"] = served.examples.get("requests", 0) + 1
    served.run(_requests_example(served, delta, node_kind, plan), timeout=60)


# Mostly-valid conversations: served types only, real names, ACKs and re-requests
# with the last version and nonce, so the ACK paths (the raw-bytes one included)
# are exercised much more often than random type URLs allow.
valid_steps = st.builds(
    Step,
    type_url=st.sampled_from(KNOWN[:4]),
    names=st.lists(st.sampled_from(REAL_NAMES), max_size=4),
    unsubscribe=st.lists(st.sampled_from(REAL_NAMES), max_size=2),
    version=st.sampled_from([LAST, LAST, ""]),
    nonce=st.sampled_from([LAST, LAST, LAST, "", "nonce-of-an-earlier-stream"]),
    error=st.one_of(st.none(), st.none(), st.none(), st.just("rejected")),
    order=st.one_of(st.just(list(range(7))), st.just(list(range(7))), st.permutations(list(range(7)))),
    node=st.booleans(),
)


@given(delta=st.booleans(), plan=st.lists(valid_steps, min_size=1, max_size=10))
def test_valid_conversations_are_never_closed(served: Served, delta: bool, plan: list[Step]) -> None:
    served.examples["valid"] = served.examples.get("valid", 0) + 1
    served.run(_requests_example(served, delta, "valid", plan), timeout=60)
