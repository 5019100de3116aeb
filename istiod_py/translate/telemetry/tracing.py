"""Tracing on every HTTP connection manager: Zipkin and OpenTelemetry providers,
sampling, custom tags, B3 and W3C propagation.

The provider is the first of the Telemetry's tracing providers (Istio supports one),
else meshConfig.defaultProviders.tracing, else the legacy
meshConfig.defaultConfig.tracing.zipkin address. Sampling is the Telemetry's
randomSamplingPercentage, else defaultConfig.tracing.sampling, else Istio's 1 %.
`enableTracing: false` turns tracing off; `disableSpanReporting` keeps the headers
flowing (Envoy still makes and forwards trace context) but configures no collector.

Propagation: Envoy's Zipkin tracer reads and writes B3 headers (and W3C
traceparent too with `traceContextOption: USE_B3_WITH_W3C_PROPAGATION`); its
OpenTelemetry tracer uses W3C trace context. A collector service the proxy cannot
see (Sidecar egress) is left out rather than sent: Envoy would reject the listener.
Istio's own `istio.*` span tags (enableIstioTags) are not added.
"""

from __future__ import annotations

from envoy.config.trace.v3 import opentelemetry_pb2, zipkin_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.request_id.uuid.v3 import uuid_pb2
from istio.mesh.v1alpha1.telemetry_config_pb2 import ExtensionProvider

from istiod_py.model import Proxy

from ..context import PushContext
from ..features import hcm_feature
from . import resolve
from .providers import provider, service_cluster

DEFAULT_SAMPLING = 1.0  # percent: Istio's default defaultConfig.tracing.sampling
ZIPKIN_PATH = "/api/v2/spans"


def _visible(ctx: PushContext, proxy: Proxy, cluster: str) -> bool:
    host = cluster.rsplit("|", 1)[-1]
    return any(s.hostname == host for s in ctx.sidecar_scope(proxy).services)


def _zipkin(ctx: PushContext, proxy: Proxy, p: ExtensionProvider) -> hcm.HttpConnectionManager.Tracing | None:
    z = p.zipkin
    cluster = service_cluster(ctx, z.service, z.port)
    if cluster is None or not _visible(ctx, proxy, cluster):
        return None
    cfg = zipkin_pb2.ZipkinConfig(
        collector_cluster=cluster,
        collector_endpoint=z.path or ZIPKIN_PATH,
        collector_endpoint_version=zipkin_pb2.ZipkinConfig.HTTP_JSON,
        trace_id_128bit=not z.enable_64bit_trace_id,
        collector_hostname=cluster.rsplit("|", 1)[-1],
    )
    # Each hop its own span (istiod's setting): parent links follow the request.
    cfg.shared_span_context.value = False
    if z.trace_context_option == z.USE_B3_WITH_W3C_PROPAGATION:
        cfg.trace_context_option = zipkin_pb2.ZipkinConfig.USE_B3_WITH_W3C_PROPAGATION
    t = hcm.HttpConnectionManager.Tracing()
    t.provider.name = "envoy.tracers.zipkin"
    t.provider.typed_config.Pack(cfg)
    if z.max_tag_length:
        t.max_path_tag_length.value = z.max_tag_length
    return t


def _legacy_zipkin(ctx: PushContext, proxy: Proxy, address: str) -> hcm.HttpConnectionManager.Tracing | None:
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        return None
    name, _, ns = host.partition(".")
    p = ExtensionProvider(name="legacy-zipkin")
    p.zipkin.service = f"{ns.split('.')[0]}/{name}" if ns else name
    p.zipkin.port = int(port)
    return _zipkin(ctx, proxy, p)


def _otel(
    ctx: PushContext, proxy: Proxy, p: ExtensionProvider, service_name: str
) -> hcm.HttpConnectionManager.Tracing | None:
    o = p.opentelemetry
    cluster = service_cluster(ctx, o.service, o.port)
    if cluster is None or not _visible(ctx, proxy, cluster):
        return None
    host = cluster.rsplit("|", 1)[-1]
    cfg = opentelemetry_pb2.OpenTelemetryConfig(service_name=service_name)
    if o.HasField("http"):
        http = cfg.http_service
        http.http_uri.uri = f"http://{host}:{o.port}{o.http.path or '/v1/traces'}"
        http.http_uri.cluster = cluster
        if o.http.HasField("timeout"):
            http.http_uri.timeout.CopyFrom(o.http.timeout)
        else:
            http.http_uri.timeout.seconds = 3
    else:
        cfg.grpc_service.envoy_grpc.cluster_name = cluster
        cfg.grpc_service.envoy_grpc.authority = host
    t = hcm.HttpConnectionManager.Tracing()
    t.provider.name = "envoy.tracers.opentelemetry"
    t.provider.typed_config.Pack(cfg)
    if o.max_tag_length:
        t.max_path_tag_length.value = o.max_tag_length
    return t


def _custom_tags(t: hcm.HttpConnectionManager.Tracing, tags: tuple[tuple[str, resolve.CustomTag], ...]) -> None:
    for name, tag in tags:
        ct = t.custom_tags.add(tag=name)
        if tag.kind == "literal":
            ct.literal.value = tag.value
        elif tag.kind == "environment":
            ct.environment.name = tag.value
            ct.environment.default_value = tag.default
        elif tag.kind == "header":
            ct.request_header.name = tag.value
            ct.request_header.default_value = tag.default
        else:
            ct.value = tag.value


def tracing_config(ctx: PushContext, proxy: Proxy, direction: str) -> hcm.HttpConnectionManager.Tracing | None:
    mesh = ctx.state.mesh.telemetry
    if not mesh.enable_tracing:
        return None
    mode = resolve.SERVER if direction == "inbound" else resolve.CLIENT
    view = resolve.view(ctx, proxy, mode)
    spec = view.tracing
    legacy = mesh.default_tracing
    t: hcm.HttpConnectionManager.Tracing | None = None
    if spec is not None and spec.disable_span_reporting:
        t = hcm.HttpConnectionManager.Tracing()
    elif spec is not None and spec.providers:
        p = provider(ctx, spec.providers[0])
        kind = p.WhichOneof("provider") if p is not None else None
        if p is not None and kind == "zipkin":
            t = _zipkin(ctx, proxy, p)
        elif p is not None and kind == "opentelemetry":
            t = _otel(ctx, proxy, p, view.service_name)
    elif legacy is not None and legacy.HasField("zipkin") and legacy.zipkin.address:
        t = _legacy_zipkin(ctx, proxy, legacy.zipkin.address)
    if t is None:
        return None
    sampling = DEFAULT_SAMPLING
    if spec is not None and spec.sampling is not None:
        sampling = spec.sampling
    elif legacy is not None and legacy.sampling:
        sampling = legacy.sampling
    t.random_sampling.value = sampling
    t.client_sampling.value = 100.0
    t.overall_sampling.value = 100.0
    custom = dict(spec.tags) if spec is not None else {}
    if legacy is not None:
        for name, tag in legacy.custom_tags.items():
            custom.setdefault(name, resolve.custom_tag(tag))
    _custom_tags(t, tuple(sorted(custom.items())))
    return t


@hcm_feature
def http_tracing(ctx: PushContext, proxy: Proxy, direction: str, port: int, m: hcm.HttpConnectionManager) -> None:
    t = tracing_config(ctx, proxy, direction)
    if t is not None:
        m.tracing.CopyFrom(t)
        mode = resolve.SERVER if direction == "inbound" else resolve.CLIENT
        spec = resolve.view(ctx, proxy, mode).tracing
        if spec is not None and not spec.use_request_id:
            # useRequestIdForTraceSampling: false, as istiod configures it.
            cfg = uuid_pb2.UuidRequestIdConfig()
            cfg.use_request_id_for_trace_sampling.value = False
            m.request_id_extension.typed_config.Pack(cfg)
