"""Sample app for the demo and e2e tests: an HTTP/1.1 server that names itself.

    python -m istiod_py.demo.app --name productpage-v1 --listen 127.0.0.10:9080 \\
        --upstream reviews.default.svc.cluster.local:9080=http://127.0.0.10:15001/chain

Every path answers JSON {name, version, path, host, headers}. ``/chain`` also calls
each upstream and nests the answers, like bookinfo's productpage → reviews →
ratings. With captureMode NONE there is no iptables to steer traffic, so an
upstream is given as the app's sidecar outbound address plus the Host header the
sidecar routes on: ``HOST=http://ADDR:PORT[/PATH]`` (no ``HOST=``: the URL's own
host:port). PATH defaults to the incoming request's path, so a chain propagates.
A failed upstream is reported in the answer (status, error) rather than failing
the whole page, as bookinfo shows "ratings unavailable".

Tracing headers (x-request-id, B3, W3C) and ``end-user`` are copied to upstream
calls so Envoy traces and header-based routes follow the chain. Stdlib only.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import logging
import re
import signal
import socket
import sys
import threading
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("istiod_py.demo.app")

PROPAGATED_HEADERS = (
    "x-request-id",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
    "traceparent",
    "tracestate",
    "x-ot-span-context",
    "x-cloud-trace-context",
    "grpc-trace-bin",
    "end-user",
    "user-agent",
)


@dataclass(frozen=True)
class Upstream:
    """Where to send a chained call: a socket address, the Host header, and an optional path."""

    address: str  # host:port to connect to (usually the sidecar's outbound listener)
    host_header: str
    path: str | None  # None: reuse the incoming request's path

    @property
    def connect_host(self) -> str:
        return self.address.rsplit(":", 1)[0]

    @property
    def connect_port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    @classmethod
    def parse(cls, spec: str) -> Upstream:
        """Parse ``[HOST=]http://ADDR:PORT[/PATH]``; raises ValueError naming what is wrong."""
        host_header, sep, url = spec.partition("=")
        if not sep:
            host_header, url = "", spec
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "http" or not parsed.hostname or parsed.port is None:
            raise ValueError(
                f"--upstream {spec!r}: expected [HOST=]http://ADDR:PORT[/PATH], "
                "e.g. reviews:9080=http://127.0.0.10:15001/chain"
            )
        address = f"{parsed.hostname}:{parsed.port}"
        path = parsed.path or None
        if path and parsed.query:
            path = f"{path}?{parsed.query}"
        return cls(address=address, host_header=host_header or address, path=path)


@dataclass(frozen=True)
class AppConfig:
    name: str
    version: str
    listen_host: str
    listen_port: int
    upstreams: tuple[Upstream, ...]
    timeout: float
    # Paths (prefixes) that call the upstreams: /chain, plus e.g. /productpage for
    # bookinfo's images as the one-host node runs them (istiod_py/node/images.py).
    chain_paths: tuple[str, ...] = ("/chain",)


def version_from_name(name: str) -> str:
    """``reviews-v2`` → ``v2``; names without a version suffix are ``v1``."""
    m = re.search(r"-(v\d+)$", name)
    return m.group(1) if m else "v1"


def call_upstream(upstream: Upstream, path: str, headers: dict[str, str], timeout: float) -> dict[str, Any]:
    """One GET to an upstream; never raises (errors become part of the answer)."""
    target = upstream.path or path
    result: dict[str, Any] = {"upstream": upstream.host_header, "address": upstream.address, "path": target}
    conn = http.client.HTTPConnection(upstream.connect_host, upstream.connect_port, timeout=timeout)
    try:
        conn.request("GET", target, headers={"Host": upstream.host_header, **headers})
        resp = conn.getresponse()
        body = resp.read()
        result["status"] = resp.status
        try:
            result["response"] = json.loads(body)
        except ValueError:
            result["response"] = body.decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as e:
        result["status"] = None
        result["error"] = f"{type(e).__name__}: {e}"
    finally:
        conn.close()
    return result


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: DemoServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, indent=2).encode() + b"\n"
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("x-demo-app", self.server.config.name)
        self.send_header("x-demo-version", self.server.config.version)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _drain_body(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)

    def do_GET(self) -> None:
        self._drain_body()
        cfg = self.server.config
        path = self.path
        bare_path = urllib.parse.urlsplit(path).path
        if bare_path in ("/health", "/healthz"):
            self._send_json(200, {"status": "ok", "name": cfg.name})
            return
        answer: dict[str, Any] = {
            "name": cfg.name,
            "version": cfg.version,
            "path": path,
            "host": self.headers.get("Host", ""),
            "headers": {k.lower(): v for k, v in self.headers.items()},
        }
        if any(bare_path == c or bare_path.startswith(c.rstrip("/") + "/") for c in cfg.chain_paths):
            propagated = {h: v for h in PROPAGATED_HEADERS if (v := self.headers.get(h)) is not None}
            answer["upstreams"] = [call_upstream(u, path, propagated, cfg.timeout) for u in cfg.upstreams]
        self._send_json(200, answer)

    do_HEAD = do_GET
    do_POST = do_GET


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__((config.listen_host, config.listen_port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def stop(self) -> None:
        """Stop serving and drop kept-alive connections (a sidecar pools them), as a dead process would."""
        self.shutdown()
        self.server_close()
        with self._open_lock:
            for sock in list(self._open):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"--listen {value!r}: expected ADDR:PORT, e.g. 127.0.0.12:9080")
    return host, int(port)


def parse_args(argv: Sequence[str] | None = None) -> AppConfig:
    p = argparse.ArgumentParser(
        prog="python -m istiod_py.demo.app",
        description="Demo sample app: answers with its name and version; /chain calls its upstreams.",
    )
    p.add_argument("--name", required=True, help="workload name, e.g. reviews-v1")
    p.add_argument("--version", help="version label (default: the -vN suffix of --name, else v1)")
    p.add_argument("--listen", required=True, type=parse_listen, help="ADDR:PORT to serve on")
    p.add_argument(
        "--upstream",
        action="append",
        default=[],
        metavar="[HOST=]http://ADDR:PORT[/PATH]",
        help="upstream for /chain, called at ADDR:PORT (the sidecar) with Host HOST; repeatable",
    )
    p.add_argument(
        "--chain-path",
        action="append",
        default=[],
        metavar="PATH",
        help="a path (and everything below it) that calls the upstreams; repeatable (default /chain)",
    )
    p.add_argument("--timeout", type=float, default=3.0, help="seconds per upstream call (default 3)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    try:
        upstreams = tuple(Upstream.parse(s) for s in args.upstream)
    except ValueError as e:
        p.error(str(e))
    host, port = args.listen
    return AppConfig(
        name=args.name,
        version=args.version or version_from_name(args.name),
        listen_host=host,
        listen_port=port,
        upstreams=upstreams,
        timeout=args.timeout,
        chain_paths=tuple(args.chain_path) or ("/chain",),
    )


def serve(config: AppConfig) -> DemoServer:
    """Start serving in a background thread; returns the server (call ``stop()`` to stop)."""
    server = DemoServer(config)
    # A short poll interval makes stop() quick: shutdown() waits for the serving loop to notice.
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"demo-{config.name}", daemon=True
    ).start()
    return server


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    try:
        server = DemoServer(config)
    except OSError as e:
        log.error("%s: cannot listen on %s:%s: %s", config.name, config.listen_host, config.listen_port, e)
        return 1

    def _stop(signum: int, frame: object) -> None:
        # shutdown() blocks until serve_forever returns, so it cannot run on the serving thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    upstreams = ", ".join(f"{u.host_header} via {u.address}" for u in config.upstreams) or "none"
    log.info(
        "%s (%s) listening on %s:%s; upstreams: %s",
        config.name,
        config.version,
        config.listen_host,
        config.listen_port,
        upstreams,
    )
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
