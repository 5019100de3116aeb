"""The HTTP connection manager and terminal network filter names every
listener uses, sidecar (sidecar/listeners.py) and gateway (gateway/listeners.py)
alike: HTTP filters are the registered features' (features.py) then the router."""

from __future__ import annotations

from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.request_id.uuid.v3 import uuid_pb2

from istiod_py.model import Proxy

from .clusters import ADS_CONFIG_SOURCE
from .context import PushContext
from .features import apply_hcm_features, extra_http_filters

HCM_NAME = "envoy.filters.network.http_connection_manager"
# What istiod's inbound and gateway HCMs put in the `server` response header.
INBOUND_SERVER_NAME = "istio-envoy"
TCP_PROXY_NAME = "envoy.filters.network.tcp_proxy"


def router_filter() -> hcm.HttpFilter:
    f = hcm.HttpFilter(name="envoy.filters.http.router")
    f.typed_config.Pack(router_pb2.Router())
    return f


def http_connection_manager(
    ctx: PushContext,
    proxy: Proxy,
    direction: str,
    port: int,
    stat_prefix: str,
    *,
    rds: str = "",
    route_config: object = None,
) -> hcm.HttpConnectionManager:
    m = hcm.HttpConnectionManager(stat_prefix=stat_prefix, codec_type=hcm.HttpConnectionManager.AUTO)
    if rds:
        m.rds.route_config_name = rds
        m.rds.config_source.CopyFrom(ADS_CONFIG_SOURCE)
    elif route_config is not None:
        m.route_config.CopyFrom(route_config)
    m.http_filters.extend(extra_http_filters(ctx, proxy, direction, port))
    m.http_filters.append(router_filter())
    m.upgrade_configs.add(upgrade_type="websocket")
    m.normalize_path.value = True
    m.use_remote_address.value = direction == "gateway"
    m.stream_idle_timeout.seconds = 0
    _istiod_defaults(m, direction)
    apply_hcm_features(ctx, proxy, direction, port, m)
    return m


def _istiod_defaults(m: hcm.HttpConnectionManager, direction: str) -> None:
    """The connection manager settings istiod's buildHTTPConnectionManager adds
    whatever the configuration (facts from istio/istio pilot/pkg/networking/core)."""
    # Keep %2F / %5C as sent (Istio's mesh pathNormalization default does not decode them).
    m.path_with_escaped_slashes_action = hcm.HttpConnectionManager.KEEP_UNCHANGED
    # Answer `Expect: 100-continue` at the proxy (ENABLE_100_CONTINUE_HEADERS, default on).
    m.proxy_100_continue = True
    # x-request-id as a UUID that also decides trace sampling (istiod's default extension).
    uuid = uuid_pb2.UuidRequestIdConfig()
    uuid.use_request_id_for_trace_sampling.value = True
    m.request_id_extension.typed_config.Pack(uuid)
    if direction != "outbound":
        # Inbound and gateways say "istio-envoy"; sidecar outbound keeps Envoy's
        # "envoy" (istiod's GetProxyHeadersFromProxyConfig).
        m.server_name = INBOUND_SERVER_NAME
