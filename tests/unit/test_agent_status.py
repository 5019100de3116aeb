"""The agent's readiness answer before it is ready: no certificate yet, or an
Envoy that is not LIVE (a stand-in admin endpoint answering as Envoy's /ready
does while initializing), and malformed ISTIO_KUBE_APP_PROBERS."""

from __future__ import annotations

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from istiod_py.agent.bootstrap import BootstrapOptions, build_bootstrap
from istiod_py.agent.metrics_merge import MergedMetrics, app_metrics_url
from istiod_py.agent.status import StatusServer, parse_probers
from istiod_py.cli.app import main
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


def test_app_metrics_url_from_the_injected_annotations() -> None:
    assert app_metrics_url("", 15020) == ""
    assert app_metrics_url('{"scrape": "false", "port": "9080"}', 15020) == ""
    # pilot-agent's defaults: path /metrics, port 80
    assert app_metrics_url('{"scrape": "true", "path": "", "port": ""}', 15020) == "http://127.0.0.1:80/metrics"
    assert app_metrics_url('{"scrape": "true", "path": "m", "port": "9080"}', 15020) == "http://127.0.0.1:9080/m"
    for bad, why in (('{"port": "15020"}', "status port"), ("{nope", "not JSON"), ('{"port": "http"}', "port")):
        with pytest.raises(ValueError, match=why) as e:
            app_metrics_url(bad, 15020)
        assert "ISTIO_PROMETHEUS_ANNOTATIONS" in str(e.value)


def test_agent_cli_refuses_a_scrape_of_its_own_port(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["agent", "--name", "a", "--root-cert", "/nonexistent", "--status-port", "15020",
               "--prometheus-annotations", '{"scrape": "true", "port": "15020"}'])  # fmt: skip
    assert rc == 2
    assert "ISTIO_PROMETHEUS_ANNOTATIONS: field port 15020" in capsys.readouterr().err


async def test_merged_metrics_keep_the_app_part_when_envoy_is_down() -> None:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text="app_up 1\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    async with TestServer(app, host="127.0.0.1") as srv:
        merged = MergedMetrics(f"127.0.0.1:{free_port()}", f"http://127.0.0.1:{srv.port}/metrics", timeout_s=2)
        status = StatusServer(lambda: True, None, {}, metrics=merged)
        port = await status.start("127.0.0.1", 0)
        try:
            async with ClientSession() as s, s.get(f"http://127.0.0.1:{port}/stats/prometheus") as r:
                assert r.status == 200
                text = await r.text()
            assert text.endswith("app_up 1\n")
            assert 'istio_agent_scrape_failures_total{type="envoy"} 1' in text
            assert 'istio_agent_scrape_failures_total{type="application"} 0' in text
            async with ClientSession() as s, s.get(f"http://127.0.0.1:{port}/quitquitquit") as r:
                assert r.status == 405  # POST only
        finally:
            await status.stop()


def test_readiness_is_an_envoy_listener_forwarding_to_the_agent() -> None:
    boot = build_bootstrap(BootstrapOptions(readiness_port=15021, agent_address="127.0.0.1:15020"))
    (listener,) = boot["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 15021}
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    (route,) = hcm["route_config"]["virtual_hosts"][0]["routes"]
    assert route == {"match": {"prefix": "/healthz/ready"}, "route": {"cluster": "agent"}}
    agent = next(c for c in boot["static_resources"]["clusters"] if c["name"] == "agent")
    ep = agent["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert ep == {"address": "127.0.0.1", "port_value": 15020}
    assert "listeners" not in build_bootstrap(BootstrapOptions())["static_resources"]
