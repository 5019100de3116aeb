"""Istio's standard request metrics from upstream Envoy: the `envoy.access_loggers.stats`
logger on every HCM (HTTP, gRPC) and tcp_proxy (TCP) emits the counters and
histograms, with tags from command operators and CEL (`%CEL(...)%`).

Envoy names a logger's stats `<stat_prefix>.<name>`, and its Prometheus output puts
`envoy_` in front: the logger uses prefix `istio` and names like `requests_total`,
so /stats/prometheus (15090) shows `envoy_istio_requests_total`; a scrape config's
metric_relabel (deploy/prometheus/prometheus.yml) drops the `envoy_` so Prometheus
stores Istio's exact names (`istio_requests_total`, ...).

How each label is derived (own side = the reporting proxy):
- reporter: "source" on outbound and gateway listeners, "destination" on inbound.
- own workload, namespace, app, version: the node metadata the proxy was started with
  (WORKLOAD_NAME, NAMESPACE, LABELS app/version), read by CEL at request time, so one
  listener config serves every workload of a scope.
- outbound peer (destination_workload, _namespace, _app, _version): the endpoint's
  metadata (peer.py) via `xds.upstream_host_metadata`; exact for mesh endpoints.
- destination_service, _name, _namespace: outbound, the cluster's `istio` services
  metadata; inbound, the services whose endpoints are this proxy at this port (literal).
- inbound peer (source_workload, _namespace, _app, _version): "unknown": Istio learns
  them from the client's metadata-exchange headers, which upstream Envoy cannot
  send or read. APPROXIMATE; source_principal (below) still names the client.
- source_principal / destination_principal: the mTLS certificates' URI SANs (peer and
  local, downstream on inbound, upstream on outbound); "" without mTLS (Istio: "unknown").
- request_protocol: "grpc" when the request's content-type is application/grpc, else
  "http"; "tcp" on tcp_proxy.
- response_code, response_flags: Envoy's; grpc_response_status: %GRPC_STATUS_NUMBER%
  ("" for non-gRPC, like Istio).
- connection_security_policy: inbound "mutual_tls" when the connection is mTLS, else
  "none"; outbound "unknown" (as Istio).
- request_bytes / response_bytes: body bytes (%BYTES_RECEIVED% / %BYTES_SENT%); Istio
  adds the headers. APPROXIMATE.
- TCP: every counter moves when the connection ends (one access log per connection;
  logging at connect too would double the file access logs). Istio counts opened at
  open and reports bytes periodically while a connection lasts. APPROXIMATE.

Telemetry `metrics` overrides apply: `disabled` drops a metric, tagOverrides REMOVE
drops a label, UPSERT sets it to the given CEL expression.
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.extensions.access_loggers.stats.v3 import stats_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from istiod_py.model import Proxy

from ..context import PushContext
from ..features import hcm_feature, tcp_proxy_feature
from . import resolve
from .peer import PEER_METADATA, UNKNOWN
from .providers import provider

STATS_LOGGER = "envoy.access_loggers.stats"
STAT_PREFIX = "istio"
MILLISECONDS = stats_pb2.Config.Histogram.Milliseconds
BYTES = stats_pb2.Config.Histogram.Bytes


def _cel(expr: str) -> str:
    return f"%CEL({expr})%"


def _or_unknown(container: str, key: str) -> str:
    return _cel(f"'{key}' in {container} ? {container}['{key}'] : '{UNKNOWN}'")


_NODE = "xds.node.metadata"
_LABELS = f"{_NODE}.LABELS"
_OWN = {
    "workload": _or_unknown(_NODE, "WORKLOAD_NAME"),
    "namespace": _or_unknown(_NODE, "NAMESPACE"),
    "app": _cel(
        f"'service.istio.io/canonical-name' in {_LABELS} ? {_LABELS}['service.istio.io/canonical-name'] : "
        f"('app' in {_LABELS} ? {_LABELS}['app'] : '{UNKNOWN}')"
    ),
    "version": _cel(
        f"'service.istio.io/canonical-revision' in {_LABELS} ? {_LABELS}['service.istio.io/canonical-revision'] : "
        f"('version' in {_LABELS} ? {_LABELS}['version'] : '{UNKNOWN}')"
    ),
}
_UPSTREAM_PEER = f"xds.upstream_host_metadata.filter_metadata['{PEER_METADATA}']"
_PEER_OUT = {k: _cel(f"{_UPSTREAM_PEER}['{k}']") for k in ("workload", "namespace", "app", "version")}
_SERVICES = "xds.cluster_metadata.filter_metadata['istio']['services'][0]"
_GRPC = "'content-type' in request.headers && request.headers['content-type'].startsWith('application/grpc')"

# (Istio metric enum, stat name, kind, value) per protocol.
HTTP_METRICS = (
    ("REQUEST_COUNT", "requests_total", "counter", ""),
    ("REQUEST_DURATION", "request_duration_milliseconds", "histogram", "%DURATION%"),
    ("REQUEST_SIZE", "request_bytes", "histogram", "%BYTES_RECEIVED%"),
    ("RESPONSE_SIZE", "response_bytes", "histogram", "%BYTES_SENT%"),
)
TCP_METRICS = (
    ("TCP_OPENED_CONNECTIONS", "tcp_connections_opened_total", "counter", ""),
    ("TCP_CLOSED_CONNECTIONS", "tcp_connections_closed_total", "counter", ""),
    ("TCP_SENT_BYTES", "tcp_sent_bytes_total", "counter", "%BYTES_SENT%"),
    ("TCP_RECEIVED_BYTES", "tcp_received_bytes_total", "counter", "%BYTES_RECEIVED%"),
)


def _inbound_service(ctx: PushContext, proxy: Proxy, port: int) -> tuple[str, str, str]:
    """(host, name, namespace) of the service this proxy serves at `port` (first by name)."""
    for ep in sorted(ctx.state.endpoints_by_address.get(proxy.ip, ()), key=lambda e: e.service):
        svc = ctx.state.services.get(ep.service)
        if svc is not None and (ep.port == port or ep.service_port == port):
            return svc.hostname, svc.hostname.split(".")[0], svc.namespace
    return UNKNOWN, UNKNOWN, UNKNOWN


def tags(ctx: PushContext, proxy: Proxy, direction: str, port: int, tcp: bool) -> dict[str, str]:
    inbound = direction == "inbound"
    own, peer = ("destination", "source") if inbound else ("source", "destination")
    out = {"reporter": "destination" if inbound else "source"}
    for key, value in _OWN.items():
        out[f"{own}_{key if key != 'namespace' else 'workload_namespace'}"] = value
    for key in ("workload", "namespace", "app", "version"):
        label = f"{peer}_{key if key != 'namespace' else 'workload_namespace'}"
        out[label] = UNKNOWN if inbound else _PEER_OUT[key]
    if inbound:
        host, name, ns = _inbound_service(ctx, proxy, port)
        out |= {"destination_service": host, "destination_service_name": name, "destination_service_namespace": ns}
        out["source_principal"] = "%DOWNSTREAM_PEER_URI_SAN%"
        out["destination_principal"] = "%DOWNSTREAM_LOCAL_URI_SAN%"
        out["connection_security_policy"] = _cel("connection.mtls ? 'mutual_tls' : 'none'")
    else:
        out["destination_service"] = _cel(f"{_SERVICES}['host']")
        out["destination_service_name"] = _cel(f"{_SERVICES}['name']")
        out["destination_service_namespace"] = _cel(f"{_SERVICES}['namespace']")
        out["source_principal"] = _cel("upstream.uri_san_local_certificate")
        out["destination_principal"] = "%UPSTREAM_PEER_URI_SAN%"
        out["connection_security_policy"] = UNKNOWN
    if tcp:
        out["request_protocol"] = "tcp"
        out["response_flags"] = "%RESPONSE_FLAGS%"
    else:
        out["request_protocol"] = _cel(f"{_GRPC} ? 'grpc' : 'http'")
        out["response_code"] = "%RESPONSE_CODE%"
        out["grpc_response_status"] = "%GRPC_STATUS_NUMBER%"
        out["response_flags"] = "%RESPONSE_FLAGS%"
    return out


def _enabled(spec: resolve.MetricsSpec, ctx: PushContext) -> bool:
    for name in spec.providers:
        p = provider(ctx, name)
        if p is not None and p.WhichOneof("provider") == "prometheus":
            return True
    return False


def _apply_overrides(spec: resolve.MetricsSpec, metric: str, base: dict[str, str]) -> dict[str, str] | None:
    """The tags of `metric` after the Telemetry overrides, or None when it is disabled."""
    out = dict(base)
    disabled = False
    for o in spec.overrides:
        if o.metric not in (metric, resolve.ALL_METRICS):
            continue
        if o.disabled is not None:
            disabled = o.disabled
        for tag, value in o.tags:
            if value is None:
                out.pop(tag, None)
            else:
                out[tag] = _cel(value)
    return None if disabled else out


def _stat(name: str, tag_values: dict[str, str]) -> stats_pb2.Config.Stat:
    stat = stats_pb2.Config.Stat(name=name)
    for k in sorted(tag_values):
        stat.tags.add(name=k, value_format=tag_values[k])
    return stat


def _logger(
    spec: resolve.MetricsSpec, defs: Iterable[tuple[str, str, str, str]], base: dict[str, str]
) -> accesslog_pb2.AccessLog | None:
    cfg = stats_pb2.Config(stat_prefix=STAT_PREFIX)
    for metric, name, kind, value in defs:
        tag_values = _apply_overrides(spec, metric, base)
        if tag_values is None:
            continue
        if kind == "counter":
            c = cfg.counters.add(stat=_stat(name, tag_values))
            if value:
                c.value_format = value
            else:
                c.value_fixed.value = 1
        else:
            h = cfg.histograms.add(stat=_stat(name, tag_values), value_format=value)
            h.unit = MILLISECONDS if name.endswith("milliseconds") else BYTES
    if not cfg.counters and not cfg.histograms:
        return None
    log = accesslog_pb2.AccessLog(name=STATS_LOGGER)
    log.typed_config.Pack(cfg)
    return log


def _shared_logger(
    ctx: PushContext, spec: resolve.MetricsSpec, defs: tuple[tuple[str, str, str, str], ...], base: dict[str, str]
) -> accesslog_pb2.AccessLog | None:
    """`_logger`, built once per state for every listener with the same spec and
    tags: a pure function of them, and outbound tags are the same for every
    proxy, so each proxy's HCM no longer rebuilds and packs the same stats config
    (it was ~10% of a connecting proxy's translation). Callers append it to a
    repeated field, which copies it: the memoized message is never changed."""
    key = ("metrics-logger", spec, id(defs), tuple(base.items()))
    memo = ctx.memo
    try:
        log: accesslog_pb2.AccessLog | None = memo[key]
    except KeyError:
        log = memo[key] = _logger(spec, defs, base)
    return log


def _spec(ctx: PushContext, proxy: Proxy, direction: str) -> resolve.MetricsSpec | None:
    mode = resolve.SERVER if direction == "inbound" else resolve.CLIENT
    spec = resolve.view(ctx, proxy, mode).metrics
    return spec if _enabled(spec, ctx) else None


@hcm_feature
def http_metrics(ctx: PushContext, proxy: Proxy, direction: str, port: int, m: hcm.HttpConnectionManager) -> None:
    spec = _spec(ctx, proxy, direction)
    if spec is None:
        return
    log = _shared_logger(ctx, spec, HTTP_METRICS, tags(ctx, proxy, direction, port, tcp=False))
    if log is not None:
        m.access_log.append(log)


@tcp_proxy_feature
def tcp_metrics(ctx: PushContext, proxy: Proxy, direction: str, tp: tcp_proxy_pb2.TcpProxy) -> None:
    spec = _spec(ctx, proxy, direction)
    if spec is None:
        return
    # The listener port is not at hand here; inbound service labels use the cluster's port.
    port = _port_of_cluster(tp.cluster)
    log = _shared_logger(ctx, spec, TCP_METRICS, tags(ctx, proxy, direction, port, tcp=True))
    if log is not None:
        tp.access_log.append(log)


def _port_of_cluster(cluster: str) -> int:
    parts = cluster.split("|")
    return int(parts[1]) if len(parts) == 4 and parts[1].isdigit() else 0
