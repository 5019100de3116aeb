"""Small builders for STATIC Envoy bootstraps (harness tests and control-plane-free checks).

Dicts follow Envoy's v3 JSON/YAML shape; ``@type`` URLs are spelled out so a reader
can match them against Envoy's docs.
"""

from __future__ import annotations

from typing import Any

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
HTTP_PROTOCOL_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def socket_address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def static_cluster(
    name: str, host: str, port: int, *, http2: bool = False, connect_timeout: str = "1s"
) -> dict[str, Any]:
    """A STATIC cluster with one endpoint; ``http2`` makes Envoy speak h2c (gRPC, h2) upstream."""
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": connect_timeout,
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket_address(host, port)}}]}],
        },
    }
    if http2:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": HTTP_PROTOCOL_OPTIONS,
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    return cluster


def virtual_host(name: str, domains: list[str], routes: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "domains": domains, "routes": routes}


def http_listener(
    name: str,
    host: str,
    port: int,
    routes: list[dict[str, Any]] | None = None,
    *,
    domains: list[str] | None = None,
    virtual_hosts: list[dict[str, Any]] | None = None,
    websocket: bool = False,
    stat_prefix: str | None = None,
) -> dict[str, Any]:
    """A listener with an HCM (codec AUTO: HTTP/1.1 and h2c prior knowledge).

    Give ``routes`` (one virtual host for ``domains``, default ``*``) or ``virtual_hosts``.
    """
    if virtual_hosts is None:
        virtual_hosts = [virtual_host(name, domains or ["*"], routes or [])]
    hcm: dict[str, Any] = {
        "@type": HCM,
        "stat_prefix": stat_prefix or name,
        "codec_type": "AUTO",
        "route_config": {"name": name, "virtual_hosts": virtual_hosts},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
    }
    if websocket:
        hcm["upgrade_configs"] = [{"upgrade_type": "websocket"}]
    return {
        "name": name,
        "address": socket_address(host, port),
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        ],
    }


def tcp_listener(name: str, host: str, port: int, cluster: str) -> dict[str, Any]:
    return {
        "name": name,
        "address": socket_address(host, port),
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.tcp_proxy",
                        "typed_config": {"@type": TCP_PROXY, "stat_prefix": name, "cluster": cluster},
                    }
                ]
            }
        ],
    }


def route_to(cluster: str, *, prefix: str = "/", **extra: Any) -> dict[str, Any]:
    """A route matching ``prefix`` to ``cluster``; ``extra`` is merged into the route entry."""
    return {"match": {"prefix": prefix}, "route": {"cluster": cluster}, **extra}


def static_bootstrap(
    admin: dict[str, Any],
    listeners: list[dict[str, Any]],
    clusters: list[dict[str, Any]],
    *,
    node_id: str = "harness",
    node_cluster: str = "harness",
) -> dict[str, Any]:
    return {
        "node": {"id": node_id, "cluster": node_cluster},
        "admin": admin,
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }


def add_request_header(key: str, value: str) -> dict[str, Any]:
    """Route extra: ``route_to(c, **add_request_header("x-route", "a"))``."""
    return {"request_headers_to_add": [{"header": {"key": key, "value": value}}]}
