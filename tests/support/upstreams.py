"""Real upstream servers on loopback, and blocking client helpers for them.

Every server runs on threads of its own (a ThreadingHTTPServer, or an asyncio
loop in a daemon thread), never on the test's event loop, so a test can block on
a client call while the control plane serves Envoy in its own loop. Clients are
blocking; async tests call them through ``asyncio.to_thread`` (or the ``a*``
wrappers below).

HTTP-ish servers (HTTP/1.1, h2c, gRPC) share ``EchoState``: a request log, per-path
counts and knobs to fail the next K requests, delay, or answer a fixed status.
Per request, the headers ``x-echo-status: 503`` and ``x-echo-delay-ms: 200`` do the
same for that request only (they reach the upstream through Envoy untouched).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, TypeVar

import grpc
import grpc.aio
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import websockets.asyncio.server
import websockets.sync.client

from .net import allocate_ip, free_port

T = TypeVar("T")

ECHO_SERVICE = "echo.Echo"
ECHO_METHOD = f"/{ECHO_SERVICE}/Echo"


# --------------------------------------------------------------------------------------------------
# shared state


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the upstream saw it. Header names are lower case; repeats joined by ','."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    protocol: str  # "HTTP/1.1", "h2c", "grpc", "websocket"
    at: float = field(default_factory=time.monotonic)

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


@dataclass
class Decision:
    status: int | None  # None: answer normally (200 / gRPC OK)
    delay: float


class EchoState:
    """Thread-safe request log and failure knobs shared by the echo servers."""

    def __init__(self, name: str, history: int = 200) -> None:
        self.name = name
        self._lock = threading.Condition()
        self._requests: collections.deque[RecordedRequest] = collections.deque(maxlen=history)
        self._counts: collections.Counter[str] = collections.Counter()
        self._total = 0
        self._fail_remaining = 0
        self._fail_status = 503
        self._delay = 0.0
        self._delay_remaining: int | None = None
        self._fixed_status: int | None = None

    # knobs
    def fail_next(self, count: int, status: int = 503) -> None:
        """Answer the next ``count`` requests with ``status`` (gRPC servers: a grpc.StatusCode value)."""
        with self._lock:
            self._fail_remaining, self._fail_status = count, status

    def delay(self, seconds: float, count: int | None = None) -> None:
        """Delay the next ``count`` requests (all of them if None) by ``seconds``."""
        with self._lock:
            self._delay, self._delay_remaining = seconds, count

    def fixed_status(self, status: int | None) -> None:
        """Answer every request with ``status`` until set back to None."""
        with self._lock:
            self._fixed_status = status

    def reset(self) -> None:
        """Clear knobs, counts and the request log."""
        with self._lock:
            self._requests.clear()
            self._counts.clear()
            self._total = 0
            self._fail_remaining = 0
            self._delay, self._delay_remaining = 0.0, None
            self._fixed_status = None

    # observation
    @property
    def requests(self) -> list[RecordedRequest]:
        """The last N requests, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def last(self) -> RecordedRequest | None:
        with self._lock:
            return self._requests[-1] if self._requests else None

    def count(self, path: str | None = None) -> int:
        """Requests seen in total, or for one exact path (query string excluded)."""
        with self._lock:
            return self._total if path is None else self._counts[path]

    def wait_for_count(self, n: int, path: str | None = None, timeout: float = 5.0) -> int:
        """Block until count(path) >= n (mirrored requests arrive asynchronously)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while (c := (self._total if path is None else self._counts[path])) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"upstream {self.name}: expected >= {n} requests"
                        f"{' to ' + path if path else ''} within {timeout}s, saw {c}"
                    )
                self._lock.wait(left)
            return c

    # used by the servers
    def record(self, req: RecordedRequest) -> Decision:
        with self._lock:
            self._requests.append(req)
            self._counts[req.path.split("?", 1)[0]] += 1
            self._total += 1
            self._lock.notify_all()
            status: int | None = self._fixed_status
            if self._fail_remaining > 0:
                self._fail_remaining -= 1
                status = self._fail_status
            delay = 0.0
            if self._delay and (self._delay_remaining is None or self._delay_remaining > 0):
                delay = self._delay
                if self._delay_remaining is not None:
                    self._delay_remaining -= 1
        per_status = req.headers.get("x-echo-status")
        if per_status and per_status.isdigit():
            status = int(per_status)
        per_delay = req.headers.get("x-echo-delay-ms")
        if per_delay and per_delay.isdigit():
            delay = max(delay, int(per_delay) / 1000)
        return Decision(status, delay)

    def echo_body(self, req: RecordedRequest) -> dict[str, Any]:
        return {
            "server": self.name,
            "method": req.method,
            "path": req.path,
            "headers": req.headers,
            "body": req.body.decode("utf-8", "replace"),
            "protocol": req.protocol,
        }


def _join_headers(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in pairs:
        k = k.lower()
        out[k] = f"{out[k]},{v}" if k in out else v
    return out


class LoopThread:
    """An asyncio event loop running forever in a daemon thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=f"loop-{name}", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        if not self.loop.is_running():
            return

        async def _cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            self.run(_cancel_all(), timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()


class Upstream:
    """Base: a named server on host:port, startable and stoppable (and restartable on the same port)."""

    protocol = "?"

    def __init__(self, name: str, host: str | None = None, port: int | None = None) -> None:
        self.name = name
        self.host = host or allocate_ip()
        self.port = port or free_port(self.host)
        self.running = False

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> Upstream:
        if not self.running:
            self._start()  # returns once the socket is bound and listening
            self.running = True
        return self

    def stop(self) -> None:
        if self.running:
            self.running = False
            self._stop()

    def _start(self) -> None:
        raise NotImplementedError

    def _stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Upstream:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.address} {'up' if self.running else 'down'}>"


class LoopUpstream(Upstream):
    """An upstream whose asyncio server runs on a loop thread of its own:
    subclasses say how to serve (`_serve`, returning the server) and, when
    closing needs more than close + wait_closed, how to close (`_close`)."""

    def __init__(self, name: str, host: str | None = None, port: int | None = None) -> None:
        super().__init__(name, host, port)
        self._loop: LoopThread | None = None
        self._server: Any = None

    async def _serve(self) -> Any:
        raise NotImplementedError

    async def _close(self, server: Any) -> None:
        server.close()
        await server.wait_closed()

    def _start(self) -> None:
        self._loop = LoopThread(f"{self.protocol}-{self.name}")
        self._server = self._loop.run(self._serve())

    def _stop(self) -> None:
        if self._loop is None or self._server is None:
            return
        try:
            self._loop.run(self._close(self._server), timeout=5)
        finally:
            self._loop.close()
            self._loop, self._server = None, None


# --------------------------------------------------------------------------------------------------
# HTTP/1.1 echo


class _EchoHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    state: EchoState
    open_sockets: set[socket.socket]
    sockets_lock: threading.Lock


class _EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _EchoHTTPServer

    def setup(self) -> None:
        super().setup()
        with self.server.sockets_lock:
            self.server.open_sockets.add(self.connection)

    def finish(self) -> None:
        with self.server.sockets_lock:
            self.server.open_sockets.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log in EchoState is the record

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        state = self.server.state
        req = RecordedRequest(
            method=self.command,
            path=self.path,
            headers=_join_headers(self.headers.items()),
            body=self._read_body(),
            protocol="HTTP/1.1",
        )
        decision = state.record(req)
        if decision.delay:
            time.sleep(decision.delay)
        status = decision.status or 200
        payload = json.dumps(state.echo_body(req)).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.send_header("x-echo-server", state.name)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle


class HttpEchoServer(Upstream):
    """HTTP/1.1 server answering JSON {server, method, path, headers, body, protocol}."""

    protocol = "http"

    def __init__(self, name: str, host: str | None = None, port: int | None = None, history: int = 200):
        super().__init__(name, host, port)
        self.state = EchoState(name, history)
        self._server: _EchoHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _start(self) -> None:
        server = _EchoHTTPServer((self.host, self.port), _EchoHandler)
        server.state = self.state
        server.open_sockets = set()
        server.sockets_lock = threading.Lock()
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"http-{self.name}", daemon=True
        )
        self._thread.start()

    def _stop(self) -> None:
        server = self._server
        if server is None:
            return
        server.shutdown()
        server.server_close()
        # Keep-alive connections from Envoy would otherwise outlive the server.
        with server.sockets_lock:
            for s in list(server.open_sockets):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        self._server = None


# --------------------------------------------------------------------------------------------------
# h2c (prior knowledge) echo


class _H2Protocol(asyncio.Protocol):
    def __init__(self, owner: H2EchoServer) -> None:
        self.owner = owner
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, tuple[list[tuple[str, str]], bytearray]] = {}
        self.window_open = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.owner._connections.add(self)
        self.conn.initiate_connection()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._connections.discard(self)
        self.window_open.set()

    def _flush(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self._flush()
            if self.transport:
                self.transport.close()
            return
        for ev in events:
            if isinstance(ev, h2.events.RequestReceived) and ev.stream_id is not None:
                hdrs = [(str(k), str(v)) for k, v in (ev.headers or [])]
                self.streams[ev.stream_id] = (hdrs, bytearray())
            elif isinstance(ev, h2.events.DataReceived) and ev.stream_id is not None:
                if ev.stream_id in self.streams and ev.data:
                    self.streams[ev.stream_id][1].extend(ev.data)
                self.conn.acknowledge_received_data(ev.flow_controlled_length or 0, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id is not None:
                if ev.stream_id in self.streams:
                    asyncio.get_running_loop().create_task(self._respond(ev.stream_id))
            elif isinstance(ev, h2.events.StreamReset) and ev.stream_id is not None:
                self.streams.pop(ev.stream_id, None)
            elif isinstance(ev, h2.events.WindowUpdated):
                self.window_open.set()
            elif isinstance(ev, h2.events.ConnectionTerminated) and self.transport:
                self.transport.close()
        self._flush()

    async def _respond(self, stream_id: int) -> None:
        hdrs, body = self.streams[stream_id]
        pseudo = dict(h for h in hdrs if h[0].startswith(":"))
        regular = [h for h in hdrs if not h[0].startswith(":")]
        headers = _join_headers(regular)
        if ":authority" in pseudo:
            headers.setdefault("host", pseudo[":authority"])
        req = RecordedRequest(pseudo.get(":method", ""), pseudo.get(":path", ""), headers, bytes(body), "h2c")
        state = self.owner.state
        decision = state.record(req)
        if decision.delay:
            await asyncio.sleep(decision.delay)
        if stream_id not in self.streams:
            return  # reset by the peer while we waited
        payload = json.dumps(state.echo_body(req)).encode()
        try:
            self.conn.send_headers(
                stream_id,
                [
                    (":status", str(decision.status or 200)),
                    ("content-type", "application/json"),
                    ("content-length", str(len(payload))),
                    ("x-echo-server", state.name),
                ],
            )
            view = memoryview(payload)
            while view:
                window = min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
                if window <= 0:
                    self.window_open.clear()
                    self._flush()
                    await self.window_open.wait()
                    if self.transport is None or self.transport.is_closing():
                        return
                    continue
                chunk, view = view[:window], view[window:]
                self.conn.send_data(stream_id, bytes(chunk), end_stream=not view)
            if not payload:
                self.conn.end_stream(stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass
        finally:
            self.streams.pop(stream_id, None)
            self._flush()


class H2EchoServer(LoopUpstream):
    """h2c server (HTTP/2 with prior knowledge, no TLS, no Upgrade) answering the same JSON."""

    protocol = "h2c"

    def __init__(self, name: str, host: str | None = None, port: int | None = None, history: int = 200):
        super().__init__(name, host, port)
        self.state = EchoState(name, history)
        self._connections: set[_H2Protocol] = set()

    async def _serve(self) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        return await loop.create_server(lambda: _H2Protocol(self), self.host, self.port, reuse_address=True)

    async def _close(self, server: asyncio.Server) -> None:
        server.close()
        for c in list(self._connections):
            if c.transport:
                c.transport.close()
        await server.wait_closed()


# --------------------------------------------------------------------------------------------------
# gRPC echo


class GrpcEchoServer(LoopUpstream):
    """grpc.aio server with a generic unary ``/echo.Echo/Echo`` (bytes in, JSON bytes out).

    The reply is JSON {server, message, metadata}. ``state.fail_next(k, grpc.StatusCode.X.value[0])``
    or the request metadata ``x-echo-grpc-status: 14`` make it fail with that gRPC status.
    """

    protocol = "grpc"

    def __init__(self, name: str, host: str | None = None, port: int | None = None, history: int = 200):
        super().__init__(name, host, port)
        self.state = EchoState(name, history)

    async def _echo(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        metadata = _join_headers(
            (k, v if isinstance(v, str) else v.hex()) for k, v in context.invocation_metadata() or ()
        )
        req = RecordedRequest("POST", ECHO_METHOD, metadata, request, "grpc")
        decision = self.state.record(req)
        if decision.delay:
            await asyncio.sleep(decision.delay)
        code = decision.status
        if metadata.get("x-echo-grpc-status", "").isdigit():
            code = int(metadata["x-echo-grpc-status"])
        if code:
            status = next((s for s in grpc.StatusCode if s.value[0] == code), grpc.StatusCode.UNKNOWN)
            await context.abort(status, f"{self.name}: failing as told (code {code})")
        reply = {"server": self.name, "message": request.decode("utf-8", "replace"), "metadata": metadata}
        return json.dumps(reply).encode()

    async def _serve(self) -> grpc.aio.Server:
        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            ECHO_SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(self._echo)}
        )
        server.add_generic_rpc_handlers((handler,))
        bound = server.add_insecure_port(f"{self.host}:{self.port}")
        if bound != self.port:
            raise OSError(f"grpc server {self.name} could not bind {self.address}")
        await server.start()
        return server

    async def _close(self, server: grpc.aio.Server) -> None:
        await server.stop(None)


# --------------------------------------------------------------------------------------------------
# WebSocket echo


class WebSocketEchoServer(LoopUpstream):
    """WebSocket server (HTTP/1.1 Upgrade) echoing each message as ``"<name>: <message>"``.

    ``state`` records each handshake (path and headers) as a RecordedRequest.
    """

    protocol = "websocket"

    def __init__(self, name: str, host: str | None = None, port: int | None = None, history: int = 200):
        super().__init__(name, host, port)
        self.state = EchoState(name, history)

    async def _handler(self, ws: websockets.asyncio.server.ServerConnection) -> None:
        request = ws.request
        if request is not None:
            self.state.record(
                RecordedRequest("GET", request.path, _join_headers(request.headers.raw_items()), b"", "websocket")
            )
        async for message in ws:
            text = message if isinstance(message, str) else message.decode("utf-8", "replace")
            await ws.send(f"{self.name}: {text}")

    async def _serve(self) -> websockets.asyncio.server.Server:
        return await websockets.asyncio.server.serve(self._handler, self.host, self.port)


# --------------------------------------------------------------------------------------------------
# TCP echo


class TcpEchoServer(LoopUpstream):
    """Line-based TCP echo: each line ``x`` is answered with ``"<name>: x\\n"``."""

    protocol = "tcp"

    def __init__(self, name: str, host: str | None = None, port: int | None = None):
        super().__init__(name, host, port)
        self.connections = 0
        self.received: list[bytes] = []
        self._lock = threading.Lock()
        self._writers: set[asyncio.StreamWriter] = set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self.connections += 1
        self._writers.add(writer)
        try:
            while line := await reader.readline():
                with self._lock:
                    self.received.append(line)
                writer.write(self.name.encode() + b": " + line.rstrip(b"\r\n") + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _serve(self) -> asyncio.Server:
        return await asyncio.start_server(self._handle, self.host, self.port, reuse_address=True)

    async def _close(self, server: asyncio.Server) -> None:
        server.close()
        for w in list(self._writers):
            w.close()
        await server.wait_closed()


# --------------------------------------------------------------------------------------------------
# clients


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names, repeats joined by ','
    body: bytes
    header_list: list[tuple[str, str]] = field(default_factory=list)
    trailers: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise AssertionError(f"response (status {self.status}) is not JSON: {self.text[:500]!r}") from e


def _encode_body(body: bytes | str | None) -> bytes | None:
    return body.encode() if isinstance(body, str) else body


def http_request(
    addr: str,
    port: int,
    path: str = "/",
    *,
    host: str | None = None,
    headers: Mapping[str, str] | None = None,
    method: str = "GET",
    body: bytes | str | None = None,
    timeout: float = 5.0,
    connection: http.client.HTTPConnection | None = None,
) -> Response:
    """One HTTP/1.1 request to addr:port with Host ``host`` (default addr:port).

    A fresh connection per call unless ``connection`` is given (see HttpSession).
    """
    conn = connection or http.client.HTTPConnection(addr, port, timeout=timeout)
    try:
        hdrs = {"Host": host or f"{addr}:{port}", **(headers or {})}
        conn.request(method, path, body=_encode_body(body), headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        pairs = [(k.lower(), v) for k, v in resp.getheaders()]
        return Response(resp.status, _join_headers(pairs), data, pairs)
    finally:
        if connection is None:
            conn.close()


class HttpSession:
    """A kept-alive HTTP/1.1 connection for tests that need connection reuse."""

    def __init__(self, addr: str, port: int, timeout: float = 5.0) -> None:
        self.addr, self.port = addr, port
        self.conn = http.client.HTTPConnection(addr, port, timeout=timeout)

    def request(self, path: str = "/", **kwargs: Any) -> Response:
        return http_request(self.addr, self.port, path, connection=self.conn, **kwargs)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> HttpSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def h2_request(
    addr: str,
    port: int,
    path: str = "/",
    *,
    host: str | None = None,
    headers: Mapping[str, str] | None = None,
    method: str = "GET",
    body: bytes | str | None = None,
    timeout: float = 5.0,
) -> Response:
    """One HTTP/2 cleartext request with prior knowledge (fresh connection)."""
    data = _encode_body(body) or b""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    with socket.create_connection((addr, port), timeout=timeout) as sock:
        conn.initiate_connection()
        stream_id = conn.get_next_available_stream_id()
        req_headers = [
            (":method", method),
            (":scheme", "http"),
            (":authority", host or f"{addr}:{port}"),
            (":path", path),
            *((k.lower(), v) for k, v in (headers or {}).items()),
        ]
        if data:
            req_headers.append(("content-length", str(len(data))))
        conn.send_headers(stream_id, req_headers, end_stream=not data)
        if data:
            conn.send_data(stream_id, data, end_stream=True)  # small bodies only: no flow-control wait
        sock.sendall(conn.data_to_send())
        status, resp_headers, trailers, out = 0, [], [], bytearray()
        done = False
        while not done:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"h2 connection to {addr}:{port} closed before the response ended")
            for ev in conn.receive_data(chunk):
                if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == stream_id:
                    resp_headers = [(str(k), str(v)) for k, v in (ev.headers or [])]
                    status = int(dict(resp_headers).get(":status", "0"))
                elif isinstance(ev, h2.events.TrailersReceived) and ev.stream_id == stream_id:
                    trailers = [(str(k), str(v)) for k, v in (ev.headers or [])]
                elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == stream_id:
                    out.extend(ev.data or b"")
                    conn.acknowledge_received_data(ev.flow_controlled_length or 0, stream_id)
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == stream_id:
                    done = True
                elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == stream_id:
                    raise ConnectionError(f"h2 stream reset by {addr}:{port} (error code {ev.error_code})")
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    raise ConnectionError(f"h2 connection terminated by {addr}:{port}: {ev.error_code}")
            sock.sendall(conn.data_to_send())
        regular = [(k, v) for k, v in resp_headers if not k.startswith(":")]
        return Response(status, _join_headers(regular), bytes(out), regular, _join_headers(trailers))


def grpc_echo(
    addr: str,
    port: int,
    message: str | bytes = "hello",
    *,
    authority: str | None = None,
    metadata: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> dict[str, Any]:
    """Call ``/echo.Echo/Echo`` over h2c; returns the reply JSON {server, message, metadata}.

    ``authority`` sets :authority (the Host Envoy routes on). Failures raise grpc.RpcError
    (``e.code()`` is the grpc.StatusCode).
    """
    options = [("grpc.default_authority", authority)] if authority else []
    payload = message.encode() if isinstance(message, str) else message
    with grpc.insecure_channel(f"{addr}:{port}", options=options) as channel:
        call = channel.unary_unary(ECHO_METHOD)
        reply = call(payload, timeout=timeout, metadata=list((metadata or {}).items()) or None)
    result: dict[str, Any] = json.loads(reply)
    return result


def websocket_exchange(
    addr: str,
    port: int,
    messages: Iterable[str],
    *,
    path: str = "/",
    host: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
    close_timeout: float = 0.2,
) -> list[str]:
    """Open a WebSocket to addr:port (Host ``host``), send each message, return each reply.

    ``close_timeout`` is short because Envoy holds the downstream socket open for its
    delayed_close_timeout (1 s) while the client waits for the server to close TCP first.
    """
    sock = socket.create_connection((addr, port), timeout=timeout)
    uri = f"ws://{host or f'{addr}:{port}'}{path}"
    replies: list[str] = []
    with websockets.sync.client.connect(
        uri,
        sock=sock,
        additional_headers=dict(headers or {}),
        open_timeout=timeout,
        close_timeout=close_timeout,
    ) as ws:
        for m in messages:
            ws.send(m)
            reply = ws.recv(timeout=timeout)
            replies.append(reply if isinstance(reply, str) else reply.decode("utf-8", "replace"))
    return replies


def tcp_exchange(addr: str, port: int, lines: str | Iterable[str], timeout: float = 5.0) -> list[str]:
    """Send each line over one TCP connection; return the line answered to each (newline stripped)."""
    items = [lines] if isinstance(lines, str) else list(lines)
    replies: list[str] = []
    with socket.create_connection((addr, port), timeout=timeout) as sock, sock.makefile("rwb") as f:
        for line in items:
            f.write(line.encode() + b"\n")
            f.flush()
            reply = f.readline()
            if not reply:
                raise ConnectionError(f"tcp {addr}:{port} closed the connection before answering {line!r}")
            replies.append(reply.decode("utf-8", "replace").rstrip("\n"))
    return replies


def tcp_echo(addr: str, port: int, line: str = "hello", timeout: float = 5.0) -> str:
    """One line over a fresh TCP connection; returns the reply (``"<server>: hello"``)."""
    return tcp_exchange(addr, port, line, timeout)[0]


async def ahttp_request(addr: str, port: int, path: str = "/", **kwargs: Any) -> Response:
    """http_request in a thread, for async tests."""
    return await asyncio.to_thread(lambda: http_request(addr, port, path, **kwargs))


async def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run any blocking client helper off the event loop: ``await in_thread(grpc_echo, ip, port)``."""
    return await asyncio.to_thread(fn, *args, **kwargs)


# --------------------------------------------------------------------------------------------------
# factory (the ``upstreams`` fixture)


class UpstreamFactory:
    """Starts upstream servers for one test and stops all of them at teardown.

    Each defaults to a fresh loopback IP and a free port; pass ``host``/``port`` to pin them
    (e.g. many workloads all on port 9080 at distinct IPs).
    """

    def __init__(self) -> None:
        self.started: list[Upstream] = []

    def _add(self, server: Upstream) -> None:
        self.started.append(server)
        server.start()

    def http(self, name: str, host: str | None = None, port: int | None = None) -> HttpEchoServer:
        s = HttpEchoServer(name, host, port)
        self._add(s)
        return s

    def h2(self, name: str, host: str | None = None, port: int | None = None) -> H2EchoServer:
        s = H2EchoServer(name, host, port)
        self._add(s)
        return s

    def grpc(self, name: str, host: str | None = None, port: int | None = None) -> GrpcEchoServer:
        s = GrpcEchoServer(name, host, port)
        self._add(s)
        return s

    def websocket(self, name: str, host: str | None = None, port: int | None = None) -> WebSocketEchoServer:
        s = WebSocketEchoServer(name, host, port)
        self._add(s)
        return s

    def tcp(self, name: str, host: str | None = None, port: int | None = None) -> TcpEchoServer:
        s = TcpEchoServer(name, host, port)
        self._add(s)
        return s

    def stop_all(self) -> None:
        errors: list[BaseException] = []
        for s in reversed(self.started):
            try:
                s.stop()
            except Exception as e:  # stop the rest regardless
                errors.append(e)
        if errors:
            raise errors[0]


__all__ = [
    "ECHO_METHOD",
    "EchoState",
    "GrpcEchoServer",
    "H2EchoServer",
    "HttpEchoServer",
    "HttpSession",
    "RecordedRequest",
    "Response",
    "TcpEchoServer",
    "Upstream",
    "UpstreamFactory",
    "WebSocketEchoServer",
    "ahttp_request",
    "grpc_echo",
    "h2_request",
    "http_request",
    "in_thread",
    "tcp_echo",
    "tcp_exchange",
    "websocket_exchange",
]


def servers_hit(addr: str, n: int, host: str, port: int = 9080, path: str = "/") -> list[str]:
    """Which echo servers answered `n` requests (the status for non-200 answers)."""
    out = []
    for _ in range(n):
        r = http_request(addr, port, path, host=host)
        out.append(r.json()["server"] if r.status == 200 else str(r.status))
    return out
