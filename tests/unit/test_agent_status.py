"""The agent's readiness answer before it is ready: no certificate yet, or an
Envoy that is not LIVE (a stand-in admin endpoint answering as Envoy's /ready
does while initializing), and malformed ISTIO_KUBE_APP_PROBERS."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestServer

from istiod_py.agent.status import StatusServer, parse_probers
from tests.support.net import free_port


async def test_not_ready_until_certificate_and_envoy_live() -> None:
    state = {"admin": (503, "PRE_INITIALIZING"), "cert": False}

    async def ready(_: web.Request) -> web.Response:
        status, text = state["admin"]  # type: ignore[misc]
        return web.Response(status=status, text=text + "\n")

    admin_app = web.Application()
    admin_app.router.add_get("/ready", ready)
    async with TestServer(admin_app, host="127.0.0.1") as admin:
        srv = StatusServer(lambda: bool(state["cert"]), f"127.0.0.1:{admin.port}", {})
        ok, why = await srv.ready()
        assert not ok and "certificate" in why
        state["cert"] = True
        ok, why = await srv.ready()
        assert not ok and "PRE_INITIALIZING" in why
        state["admin"] = (200, "LIVE")
        assert (await srv.ready())[0]
        await srv.stop()
    srv = StatusServer(lambda: True, f"127.0.0.1:{free_port()}", {})  # Envoy gone
    ok, why = await srv.ready()
    assert not ok and "unreachable" in why
    await srv.stop()


def test_parse_probers_ignores_garbage() -> None:
    assert parse_probers("") == {}
    assert parse_probers("{nope") == {}
    assert parse_probers("[1]") == {}
    assert parse_probers('{"/a": {"tcpSocket": {"port": 1}}, "/b": 3}') == {"/a": {"tcpSocket": {"port": 1}}}
