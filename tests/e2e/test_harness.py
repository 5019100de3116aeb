"""Proves the e2e harness with real Envoy and a STATIC bootstrap (no control plane)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import grpc
import pytest

from istiod_py.demo import app as demo_app
from tests.support.bootstrap import (
    add_request_header,
    http_listener,
    route_to,
    static_bootstrap,
    static_cluster,
    tcp_listener,
    virtual_host,
)
from tests.support.envoy import EnvoyError, EnvoyFactory, EnvoyProcess, admin_address, admin_config
from tests.support.net import Loopback, free_port, wait_for_port
from tests.support.upstreams import (
    UpstreamFactory,
    ahttp_request,
    grpc_echo,
    h2_request,
    http_request,
    in_thread,
    tcp_echo,
    websocket_exchange,
)

pytestmark = pytest.mark.e2e

PORT = 9080  # every sidecar binds the same port on its own IP, as with captureMode NONE


def test_http_through_envoy(envoy_factory: EnvoyFactory, upstreams: UpstreamFactory, loopback: Loopback) -> None:
    backend = upstreams.http("reviews-v1")
    ip = loopback.ip()
    bootstrap = static_bootstrap(
        admin_config(*admin_address(ip)),
        [
            http_listener(
                "http",
                ip,
                PORT,
                [route_to("reviews", **add_request_header("x-route", "harness"))],
            )
        ],
        [static_cluster("reviews", backend.host, backend.port)],
    )
    envoy = envoy_factory(bootstrap, name="sidecar")

    resp = http_request(ip, PORT, "/reviews/1", host="reviews:9080", headers={"x-test": "1"})
    assert resp.status == 200, resp.text
    body = resp.json()
    assert body["server"] == "reviews-v1"
    assert body["path"] == "/reviews/1"
    assert body["headers"]["x-route"] == "harness"
    assert body["headers"]["host"] == "reviews:9080"
    assert resp.headers["x-echo-server"] == "reviews-v1"
    assert backend.state.count("/reviews/1") == 1
    assert backend.state.last is not None and backend.state.last.header("x-test") == "1"

    # Failure knobs reach the client through Envoy, and admin stats see them.
    backend.state.fail_next(2, 503)
    assert [http_request(ip, PORT, "/x").status for _ in range(3)] == [503, 503, 200]
    assert http_request(ip, PORT, "/y", headers={"x-echo-status": "418"}).status == 418
    envoy.wait_for(lambda: envoy.stat("cluster.reviews.upstream_rq_503") == 2, message="503 stat")
    assert "reviews" in envoy.cluster_names()
    assert envoy.cluster_hosts("reviews") == [backend.address]
    assert "http" in envoy.listener_names()
    dump = envoy.config_dump()
    assert any(c["@type"].endswith("ListenersConfigDump") for c in dump["configs"])
    assert envoy.startup_seconds is not None


def test_same_port_on_distinct_ips(envoy_factory: EnvoyFactory, upstreams: UpstreamFactory, loopback: Loopback) -> None:
    a, b = upstreams.http("a", port=PORT), upstreams.http("b", port=PORT)
    ip_a, ip_b = loopback.ips(2)
    for ip, backend in ((ip_a, a), (ip_b, b)):
        envoy_factory(
            static_bootstrap(
                admin_config(*admin_address(ip)),
                [http_listener("http", ip, PORT, [route_to("be")])],
                [static_cluster("be", backend.host, backend.port)],
            ),
            name=f"sidecar-{backend.name}",
            wait=False,
        )
    for proc in envoy_factory.started:
        proc.wait_ready()
    assert http_request(ip_a, PORT).json()["server"] == "a"
    assert http_request(ip_b, PORT).json()["server"] == "b"


def test_tcp_through_envoy(envoy_factory: EnvoyFactory, upstreams: UpstreamFactory, loopback: Loopback) -> None:
    backend = upstreams.tcp("mongo")
    ip = loopback.ip()
    envoy_factory(
        static_bootstrap(
            admin_config(*admin_address(ip)),
            [tcp_listener("tcp", ip, 27017, "mongo")],
            [static_cluster("mongo", backend.host, backend.port)],
        )
    )
    assert tcp_echo(ip, 27017, "ping") == "mongo: ping"
    assert backend.connections == 1


def test_grpc_and_h2c_through_envoy(
    envoy_factory: EnvoyFactory, upstreams: UpstreamFactory, loopback: Loopback
) -> None:
    grpc_backend = upstreams.grpc("echo-grpc")
    h2_backend = upstreams.h2("echo-h2")
    ip = loopback.ip()
    envoy_factory(
        static_bootstrap(
            admin_config(*admin_address(ip)),
            [
                http_listener(
                    "http",
                    ip,
                    PORT,
                    [
                        route_to("grpc", prefix="/echo.Echo/"),
                        route_to("h2", **add_request_header("x-route", "h2")),
                    ],
                )
            ],
            [
                static_cluster("grpc", grpc_backend.host, grpc_backend.port, http2=True),
                static_cluster("h2", h2_backend.host, h2_backend.port, http2=True),
            ],
        )
    )
    reply = grpc_echo(ip, PORT, "hi", authority="echo.default.svc.cluster.local", metadata={"x-md": "v"})
    assert reply["server"] == "echo-grpc"
    assert reply["message"] == "hi"
    assert reply["metadata"]["x-md"] == "v"

    grpc_backend.state.fail_next(1, grpc.StatusCode.UNAVAILABLE.value[0])
    with pytest.raises(grpc.RpcError) as err:
        grpc_echo(ip, PORT, "hi")
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE

    resp = h2_request(ip, PORT, "/h2", host="echo-h2", method="POST", body="payload")
    assert resp.status == 200
    body = resp.json()
    assert (body["server"], body["protocol"], body["body"]) == ("echo-h2", "h2c", "payload")
    assert body["headers"]["x-route"] == "h2"
    # An HTTP/1.1 client downstream, HTTP/2 upstream.
    assert http_request(ip, PORT, "/h1").json()["protocol"] == "h2c"


def test_websocket_through_envoy(envoy_factory: EnvoyFactory, upstreams: UpstreamFactory, loopback: Loopback) -> None:
    backend = upstreams.websocket("ws")
    ip = loopback.ip()
    envoy_factory(
        static_bootstrap(
            admin_config(*admin_address(ip)),
            [http_listener("http", ip, PORT, [route_to("ws")], websocket=True)],
            [static_cluster("ws", backend.host, backend.port)],
        )
    )
    assert websocket_exchange(ip, PORT, ["a", "b"], path="/chat", host="ws.local") == ["ws: a", "ws: b"]
    last = backend.state.last
    assert last is not None and last.path == "/chat" and last.header("host") == "ws.local"


def test_upstream_stop_and_restart(upstreams: UpstreamFactory) -> None:
    srv = upstreams.http("flaky")
    assert http_request(srv.host, srv.port).status == 200
    srv.stop()
    with pytest.raises(OSError):
        http_request(srv.host, srv.port, timeout=1)
    srv.start()
    assert http_request(srv.host, srv.port).json()["server"] == "flaky"
    srv.state.delay(0.3, count=1)
    started = time.monotonic()
    http_request(srv.host, srv.port)
    assert time.monotonic() - started >= 0.3


def test_envoy_early_exit_reports_log(loopback: Loopback, tmp_path: object) -> None:
    ip = loopback.ip()
    bad = static_bootstrap(
        admin_config(ip, free_port(ip)),
        [http_listener("http", ip, PORT, [route_to("no-such-cluster")])],
        [{"name": "broken", "type": "NOT_A_TYPE"}],
    )
    proc = EnvoyProcess(bad, name="broken")
    try:
        proc.start()
        with pytest.raises(EnvoyError) as err:
            proc.wait_ready(timeout=10)
        message = str(err.value)
        assert "exited early" in message
        assert "NOT_A_TYPE" in message  # the log tail names the problem
    finally:
        proc.cleanup()


def test_demo_app_chain_through_envoy(envoy_factory: EnvoyFactory, loopback: Loopback) -> None:
    """productpage (a real subprocess) → sidecar → reviews → sidecar → ratings, routed on Host."""
    pp_ip, reviews_ip, ratings_ip, sidecar_ip = loopback.ips(4)
    via = f"http://{sidecar_ip}:{PORT}"
    servers = [
        demo_app.serve(demo_app.parse_args(["--name", "ratings-v1", "--listen", f"{ratings_ip}:{PORT}"])),
        demo_app.serve(
            demo_app.parse_args(
                [
                    "--name",
                    "reviews-v2",
                    "--listen",
                    f"{reviews_ip}:{PORT}",
                    "--upstream",
                    f"ratings:9080={via}",
                ]
            )
        ),
    ]
    # One Envoy plays every sidecar's outbound listener.
    envoy_factory(
        static_bootstrap(
            admin_config(*admin_address(sidecar_ip)),
            [
                http_listener(
                    "outbound",
                    sidecar_ip,
                    PORT,
                    virtual_hosts=[
                        virtual_host("reviews", ["reviews:9080"], [route_to("reviews")]),
                        virtual_host("ratings", ["ratings:9080"], [route_to("ratings")]),
                    ],
                )
            ],
            [static_cluster("reviews", reviews_ip, PORT), static_cluster("ratings", ratings_ip, PORT)],
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "istiod_py.demo.app",
         "--name", "productpage-v1", "--listen", f"{pp_ip}:{PORT}", "--upstream", f"reviews:9080={via}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for_port(pp_ip, PORT, timeout=10)
        resp = http_request(pp_ip, PORT, "/chain", headers={"x-request-id": "abc"})
        assert resp.status == 200, resp.text
        page = resp.json()
        assert (page["name"], page["version"]) == ("productpage-v1", "v1")
        [reviews] = page["upstreams"]
        assert reviews["status"] == 200, reviews
        assert reviews["response"]["name"] == "reviews-v2"
        [ratings] = reviews["response"]["upstreams"]
        assert ratings["response"]["name"] == "ratings-v1"
        assert ratings["response"]["headers"]["x-request-id"] == "abc"  # propagated through the chain
        # A dead upstream is reported in the page, not a failed page.
        servers[0].stop()
        degraded = http_request(pp_ip, PORT, "/chain").json()
        assert degraded["upstreams"][0]["response"]["upstreams"][0]["status"] == 503
    finally:
        proc.terminate()
        output = proc.communicate(timeout=5)[0].decode()
        for s in servers:
            s.stop()  # idempotent
    assert "productpage-v1 (v1) listening" in output


async def test_async_helpers_do_not_block_the_loop(
    envoy_factory: EnvoyFactory, upstreams: UpstreamFactory, loopback: Loopback
) -> None:
    """In async tests (control plane in the same loop) use the a*/in_thread variants."""
    backend = upstreams.http("async")
    ip = loopback.ip()
    envoy = envoy_factory(
        static_bootstrap(
            admin_config(*admin_address(ip)),
            [http_listener("http", ip, PORT, [route_to("be")])],
            [static_cluster("be", backend.host, backend.port)],
        ),
        wait=False,
    )
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    try:
        await envoy.await_ready()
        resp = await ahttp_request(ip, PORT, "/a")
        assert resp.json()["server"] == "async"
        await envoy.await_for(lambda: envoy.stat("cluster.be.upstream_rq_200") == 1, message="rq stat")
        assert (await in_thread(http_request, ip, PORT, "/b", host="x")).status == 200
    finally:
        task.cancel()
    assert ticks > 0
