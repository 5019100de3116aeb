"""Access logs on every HTTP connection manager and tcp_proxy: Istio's default text
format or JSON encoding, custom formats, CEL filters (`filter.expression`), to a
file (envoyFileAccessLog, meshConfig.accessLogFile) or to an OpenTelemetry
collector (envoyOtelAls).

Which providers log, and with which filter, is resolve.py's (Telemetry override
semantics); outbound and gateway listeners are mode CLIENT, inbound ones SERVER,
as in istiod.
"""

from __future__ import annotations

from typing import Any

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.access_loggers.filters.cel.v3 import cel_pb2
from envoy.extensions.access_loggers.open_telemetry.v3 import logs_service_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import struct_pb2
from istio.mesh.v1alpha1.telemetry_config_pb2 import ExtensionProvider

from istiod_py.model import Proxy

from ..context import PushContext
from ..features import hcm_feature, tcp_proxy_feature
from . import resolve
from .providers import provider, service_cluster

# Istio's default access log format (1.9 onwards), text and JSON.
TEXT_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
    '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% '
    '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" '
    '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% '
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% "
    "%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"
)
JSON_FORMAT: dict[str, str] = {
    "start_time": "%START_TIME%",
    "route_name": "%ROUTE_NAME%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "protocol": "%PROTOCOL%",
    "response_code": "%RESPONSE_CODE%",
    "response_flags": "%RESPONSE_FLAGS%",
    "response_code_details": "%RESPONSE_CODE_DETAILS%",
    "connection_termination_details": "%CONNECTION_TERMINATION_DETAILS%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "duration": "%DURATION%",
    "upstream_service_time": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    "x_forwarded_for": "%REQ(X-FORWARDED-FOR)%",
    "user_agent": "%REQ(USER-AGENT)%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "authority": "%REQ(:AUTHORITY)%",
    "upstream_host": "%UPSTREAM_HOST%",
    "upstream_cluster": "%UPSTREAM_CLUSTER_RAW%",
    "upstream_local_address": "%UPSTREAM_LOCAL_ADDRESS%",
    "downstream_local_address": "%DOWNSTREAM_LOCAL_ADDRESS%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "requested_server_name": "%REQUESTED_SERVER_NAME%",
    "upstream_transport_failure_reason": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
}
FILE_LOGGER = "envoy.access_loggers.file"
OTEL_LOGGER = "envoy.access_loggers.open_telemetry"
CEL_FILTER = "envoy.access_loggers.extension_filters.cel"
OTEL_LOG_NAME = "otel_envoy_accesslog"


def mode_of(proxy: Proxy, direction: str) -> str:
    return resolve.SERVER if direction == "inbound" else resolve.CLIENT


def _text(fmt: str) -> str:
    # istiod ends every text format with a newline, so one request is one line.
    return fmt if fmt.endswith("\n") else fmt + "\n"


def _struct(fields: Any) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(dict(fields))
    return s


def _file_log(path: str, *, text: str = "", labels: Any = None, omit_empty: bool = False) -> accesslog_pb2.AccessLog:
    cfg = file_pb2.FileAccessLog(path=path)
    fmt = cfg.log_format
    if labels is not None:
        fmt.json_format.CopyFrom(_struct(labels) if not isinstance(labels, struct_pb2.Struct) else labels)
    else:
        fmt.text_format_source.inline_string = _text(text or TEXT_FORMAT)
    fmt.omit_empty_values = omit_empty
    log = accesslog_pb2.AccessLog(name=FILE_LOGGER)
    log.typed_config.Pack(cfg)
    return log


def _mesh_file_log(ctx: PushContext, path: str) -> accesslog_pb2.AccessLog:
    t = ctx.state.mesh.telemetry
    if t.access_log_encoding == "JSON":
        labels: Any = JSON_FORMAT
        if t.access_log_format:
            # istiod reads a JSON accessLogFormat as the labels object.
            import json

            labels = json.loads(t.access_log_format)
        return _file_log(path, labels=labels)
    return _file_log(path, text=t.access_log_format)


def _otel_log(ctx: PushContext, p: ExtensionProvider) -> accesslog_pb2.AccessLog | None:
    als = p.envoy_otel_als
    cluster = service_cluster(ctx, als.service, als.port)
    if cluster is None:
        return None
    cfg = logs_service_pb2.OpenTelemetryAccessLogConfig()
    common = cfg.common_config
    common.log_name = als.log_name or OTEL_LOG_NAME
    common.grpc_service.envoy_grpc.cluster_name = cluster
    common.transport_api_version = 2  # V3
    cfg.body.string_value = _text(als.log_format.text or TEXT_FORMAT).rstrip("\n")
    for key, value in sorted(als.log_format.labels.items()):
        kv = cfg.attributes.values.add(key=key)
        kv.value.string_value = str(value)
    log = accesslog_pb2.AccessLog(name=OTEL_LOGGER)
    log.typed_config.Pack(cfg)
    return log


def _for_provider(ctx: PushContext, spec: resolve.LogSpec) -> accesslog_pb2.AccessLog | None:
    t = ctx.state.mesh.telemetry
    if spec.provider == resolve.MESH_FILE_LOG:
        return _mesh_file_log(ctx, t.access_log_file)
    p = provider(ctx, spec.provider)
    if p is None:
        return None  # an unknown provider: istiod skips it too (analysis reports it)
    kind = p.WhichOneof("provider")
    if kind == "envoy_file_access_log":
        f = p.envoy_file_access_log
        if p.name == "envoy" and not f.HasField("log_format"):
            # Istio's built-in provider follows meshConfig's accessLogFile/Format/Encoding.
            return _mesh_file_log(ctx, t.access_log_file or f.path)
        which = f.log_format.WhichOneof("log_format")
        if which == "labels":
            labels = f.log_format.labels if f.log_format.labels.fields else _struct(JSON_FORMAT)
            return _file_log(f.path, labels=labels, omit_empty=f.omit_empty_values)
        return _file_log(f.path, text=f.log_format.text, omit_empty=f.omit_empty_values)
    if kind == "envoy_otel_als":
        return _otel_log(ctx, p)
    return None


def _with_filter(log: accesslog_pb2.AccessLog, expression: str) -> accesslog_pb2.AccessLog:
    if expression:
        ext = log.filter.extension_filter
        ext.name = CEL_FILTER
        ext.typed_config.Pack(cel_pb2.ExpressionFilter(expression=expression))
    return log


def access_logs(ctx: PushContext, proxy: Proxy, direction: str) -> list[accesslog_pb2.AccessLog]:
    out = []
    for spec in resolve.view(ctx, proxy, mode_of(proxy, direction)).access_logs:
        log = _for_provider(ctx, spec)
        if log is not None:
            out.append(_with_filter(log, spec.filter))
    return out


@hcm_feature
def http_access_logs(ctx: PushContext, proxy: Proxy, direction: str, port: int, m: hcm.HttpConnectionManager) -> None:
    m.access_log.extend(access_logs(ctx, proxy, direction))


@tcp_proxy_feature
def tcp_access_logs(ctx: PushContext, proxy: Proxy, direction: str, tp: tcp_proxy_pb2.TcpProxy) -> None:
    tp.access_log.extend(access_logs(ctx, proxy, direction))
