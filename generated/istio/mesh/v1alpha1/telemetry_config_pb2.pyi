import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import wrappers_pb2 as _wrappers_pb2
from istio.networking.v1alpha3 import destination_rule_pb2 as _destination_rule_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DefaultProviders(_message.Message):
    __slots__ = ("tracing", "metrics", "access_logging")
    TRACING_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ACCESS_LOGGING_FIELD_NUMBER: _ClassVar[int]
    tracing: _containers.RepeatedScalarFieldContainer[str]
    metrics: _containers.RepeatedScalarFieldContainer[str]
    access_logging: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tracing: _Optional[_Iterable[str]] = ..., metrics: _Optional[_Iterable[str]] = ..., access_logging: _Optional[_Iterable[str]] = ...) -> None: ...

class ExtensionProvider(_message.Message):
    __slots__ = ("name", "envoy_ext_authz_http", "envoy_ext_authz_grpc", "zipkin", "lightstep", "datadog", "stackdriver", "opencensus", "skywalking", "opentelemetry", "prometheus", "envoy_file_access_log", "envoy_http_als", "envoy_tcp_als", "envoy_otel_als", "sds")
    class ServiceAttributeEnrichment(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ISTIO_CANONICAL: _ClassVar[ExtensionProvider.ServiceAttributeEnrichment]
        OTEL_SEMANTIC_CONVENTIONS: _ClassVar[ExtensionProvider.ServiceAttributeEnrichment]
    ISTIO_CANONICAL: ExtensionProvider.ServiceAttributeEnrichment
    OTEL_SEMANTIC_CONVENTIONS: ExtensionProvider.ServiceAttributeEnrichment
    class EnvoyExternalAuthorizationRequestBody(_message.Message):
        __slots__ = ("max_request_bytes", "allow_partial_message", "pack_as_bytes")
        MAX_REQUEST_BYTES_FIELD_NUMBER: _ClassVar[int]
        ALLOW_PARTIAL_MESSAGE_FIELD_NUMBER: _ClassVar[int]
        PACK_AS_BYTES_FIELD_NUMBER: _ClassVar[int]
        max_request_bytes: int
        allow_partial_message: bool
        pack_as_bytes: bool
        def __init__(self, max_request_bytes: _Optional[int] = ..., allow_partial_message: _Optional[bool] = ..., pack_as_bytes: _Optional[bool] = ...) -> None: ...
    class EnvoyExternalAuthorizationHttpProvider(_message.Message):
        __slots__ = ("service", "port", "timeout", "path_prefix", "fail_open", "clear_route_cache", "status_on_error", "include_headers_in_check", "include_request_headers_in_check", "include_additional_headers_in_check", "include_request_body_in_check", "headers_to_upstream_on_allow", "headers_to_downstream_on_deny", "headers_to_downstream_on_allow")
        class IncludeAdditionalHeadersInCheckEntry(_message.Message):
            __slots__ = ("key", "value")
            KEY_FIELD_NUMBER: _ClassVar[int]
            VALUE_FIELD_NUMBER: _ClassVar[int]
            key: str
            value: str
            def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
        SERVICE_FIELD_NUMBER: _ClassVar[int]
        PORT_FIELD_NUMBER: _ClassVar[int]
        TIMEOUT_FIELD_NUMBER: _ClassVar[int]
        PATH_PREFIX_FIELD_NUMBER: _ClassVar[int]
        FAIL_OPEN_FIELD_NUMBER: _ClassVar[int]
        CLEAR_ROUTE_CACHE_FIELD_NUMBER: _ClassVar[int]
        STATUS_ON_ERROR_FIELD_NUMBER: _ClassVar[int]
        INCLUDE_HEADERS_IN_CHECK_FIELD_NUMBER: _ClassVar[int]
        INCLUDE_REQUEST_HEADERS_IN_CHECK_FIELD_NUMBER: _ClassVar[int]
        INCLUDE_ADDITIONAL_HEADERS_IN_CHECK_FIELD_NUMBER: _ClassVar[int]
        INCLUDE_REQUEST_BODY_IN_CHECK_FIELD_NUMBER: _ClassVar[int]
        HEADERS_TO_UPSTREAM_ON_ALLOW_FIELD_NUMBER: _ClassVar[int]
        HEADERS_TO_DOWNSTREAM_ON_DENY_FIELD_NUMBER: _ClassVar[int]
        HEADERS_TO_DOWNSTREAM_ON_ALLOW_FIELD_NUMBER: _ClassVar[int]
        service: str
        port: int
        timeout: _duration_pb2.Duration
        path_prefix: str
        fail_open: bool
        clear_route_cache: bool
        status_on_error: str
        include_headers_in_check: _containers.RepeatedScalarFieldContainer[str]
        include_request_headers_in_check: _containers.RepeatedScalarFieldContainer[str]
        include_additional_headers_in_check: _containers.ScalarMap[str, str]
        include_request_body_in_check: ExtensionProvider.EnvoyExternalAuthorizationRequestBody
        headers_to_upstream_on_allow: _containers.RepeatedScalarFieldContainer[str]
        headers_to_downstream_on_deny: _containers.RepeatedScalarFieldContainer[str]
        headers_to_downstream_on_allow: _containers.RepeatedScalarFieldContainer[str]
        def __init__(self, service: _Optional[str] = ..., port: _Optional[int] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., path_prefix: _Optional[str] = ..., fail_open: _Optional[bool] = ..., clear_route_cache: _Optional[bool] = ..., status_on_error: _Optional[str] = ..., include_headers_in_check: _Optional[_Iterable[str]] = ..., include_request_headers_in_check: _Optional[_Iterable[str]] = ..., include_additional_headers_in_check: _Optional[_Mapping[str, str]] = ..., include_request_body_in_check: _Optional[_Union[ExtensionProvider.EnvoyExternalAuthorizationRequestBody, _Mapping]] = ..., headers_to_upstream_on_allow: _Optional[_Iterable[str]] = ..., headers_to_downstream_on_deny: _Optional[_Iterable[str]] = ..., headers_to_downstream_on_allow: _Optional[_Iterable[str]] = ...) -> None: ...
    class EnvoyExternalAuthorizationGrpcProvider(_message.Message):
        __slots__ = ("service", "port", "timeout", "fail_open", "clear_route_cache", "status_on_error", "include_request_body_in_check")
        SERVICE_FIELD_NUMBER: _ClassVar[int]
        PORT_FIELD_NUMBER: _ClassVar[int]
        TIMEOUT_FIELD_NUMBER: _ClassVar[int]
        FAIL_OPEN_FIELD_NUMBER: _ClassVar[int]
        CLEAR_ROUTE_CACHE_FIELD_NUMBER: _ClassVar[int]
        STATUS_ON_ERROR_FIELD_NUMBER: _ClassVar[int]
        INCLUDE_REQUEST_BODY_IN_CHECK_FIELD_NUMBER: _ClassVar[int]
        service: str
        port: int
        timeout: _duration_pb2.Duration
        fail_open: bool
        clear_route_cache: bool
        status_on_error: str
        include_request_body_in_check: ExtensionProvider.EnvoyExternalAuthorizationRequestBody
        def __init__(self, service: _Optional[str] = ..., port: _Optional[int] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., fail_open: _Optional[bool] = ..., clear_route_cache: _Optional[bool] = ..., status_on_error: _Optional[str] = ..., include_request_body_in_check: _Optional[_Union[ExtensionProvider.EnvoyExternalAuthorizationRequestBody, _Mapping]] = ...) -> None: ...
    class ZipkinTracingProvider(_message.Message):
        __slots__ = ("service", "port", "max_tag_length", "enable_64bit_trace_id", "path", "trace_context_option", "timeout", "headers")
        class TraceContextOption(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
            __slots__ = ()
            USE_B3: _ClassVar[ExtensionProvider.ZipkinTracingProvider.TraceContextOption]
            USE_B3_WITH_W3C_PROPAGATION: _ClassVar[ExtensionProvider.ZipkinTracingProvider.TraceContextOption]
        USE_B3: ExtensionProvider.ZipkinTracingProvider.TraceContextOption
        USE_B3_WITH_W3C_PROPAGATION: ExtensionProvider.ZipkinTracingProvider.TraceContextOption
        SERVICE_FIELD_NUMBER: _ClassVar[int]
        PORT_FIELD_NUMBER: _ClassVar[int]
        MAX_TAG_LENGTH_FIELD_NUMBER: _ClassVar[int]
        ENABLE_64BIT_TRACE_ID_FIELD_NUMBER: _ClassVar[int]
        PATH_FIELD_NUMBER: _ClassVar[int]
        TRACE_CONTEXT_OPTION_FIELD_NUMBER: _ClassVar[int]
        TIMEOUT_FIELD_NUMBER: _ClassVar[int]
        HEADERS_FIELD_NUMBER: _ClassVar[int]
        service: str
        port: int
        max_tag_length: int
        enable_64bit_trace_id: bool
        path: str
        trace_context_option: ExtensionProvider.ZipkinTracingProvider.TraceContextOption
        timeout: _duration_pb2.Duration
        headers: _containers.RepeatedCompositeFieldContainer[ExtensionProvider.HttpHeader]
        def __init__(self, service: _Optional[str] = ..., port: _Optional[int] = ..., max_tag_length: _Optional[int] = ..., enable_64bit_trace_id: _Optional[bool] = ..., path: _Optional[str] = ..., trace_context_option: _Optional[_Union[ExtensionProvider.ZipkinTracingProvider.TraceContextOption, str]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., headers: _Optional[_Iterable[_Union[ExtensionProvider.HttpHeader, _Mapping]]] = ...) -> None: ...
    class LightstepTracingProvider(_message.Message):
        __slots__ = ("service", "port", "access_token", "max_tag_length")
        SERVICE_FIELD_NUMBER: _ClassVar[int]
        PORT_FIELD_NUMBER: _ClassVar[int]
        ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
        MAX_TAG_LENGTH_FIELD_NUMBER: _ClassVar[int]
        service: str
        port: int
        access_token: str
        max_tag_length: int
        def __init__(self, service: _Optional[str] = ..., port: _Optional[int] = ..., access_token: _Optional[str] = ..., max_tag_length: _Optional[int] = ...) -> None: ...
    class DatadogTracingProvider(_message.Message):
        __slots__ = ("service", "port", "max_tag_length")
        SERVICE_FIELD_NUMBER: _ClassVar[int]
        PORT_FIELD_NUMBER: _ClassVar[int]
        MAX_TAG_LENGTH_FIELD_NUMBER: _ClassVar[int]
        service: str
        port: int
        max_tag_length: int
        def __init__(self, service: _Optional[str] = ..., port: _Optional[int] = ..., max_tag_length: _Optional[int] = ...) -> None: ...
    class SkyWalkingTracingProvider(_message.Message):
        __slots__ = ("service", "port", "access_token")
        SERVICE_FIELD_NUMBER: _ClassVar[int]
        PORT_FIELD_NUMBER: _ClassVar[int]
        ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
        service: str
        port: int
        access_token: str
        def __init__(self, service: _Optional[str] = ..., port: _Optional[int] = ..., access_token: _Optional[str] = ...) -> None: ...
    class StackdriverProvider(_message.Message):
        __slots__ = ("debug", "max_number_of_attributes", "max_number_of_annotations", "max_number_of_message_events", "max_tag_length", "logging")
        class Logging(_message.Message):
            __slots__ = ("labels",)
            class LabelsEntry(_message.Message):
                __slots__ = ("key", "value")
                KEY_FIELD_NUMBER: _ClassVar[int]
                VALUE_FIELD_NUMBER: _ClassVar[int]
                key: str
                value: str
                def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
            LABELS_FIELD_NUMBER: _ClassVar[int]
            labels: _containers.ScalarMap[str, str]
            def __init__(self, labels: _Optional[_Mapping[str, str]] = ...) -> None: ...
        DEBUG_FIELD_NUMBER: _ClassVar[int]
        MAX_NUMBER_OF_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
        MAX_NUMBER_OF_ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
        MAX_NUMBER_OF_MESSAGE_EVENTS_FIELD_NUMBER: _ClassVar[int]
        MAX_TAG_LENGTH_FIELD_NUMBER: _ClassVar[int]
        LOGGING_FIELD_NUMBER: _ClassVar[int]
        debug: bool
        max_number_of_attributes: _wrappers_pb2.Int64Value
        max_number_of_annotations: _wrappers_pb2.Int64Value
        max_number_of_message_events: _wrappers_pb2.Int64Value
        max_tag_length: int
        logging: ExtensionProvider.StackdriverProvider.Logging
        def __init__(self, debug: _Optional[bool] = ..., max_number_of_attributes: _Optional[_Union[_wrappers_pb2.Int64Value, _Mapping]] = ..., max_number_of_annotations: _Optional[_Union[_wrappers_pb2.Int64Value, _Mapping]] = ..., max_number_of_message_events: _Optional[_Union[_wrappers_pb2.Int64Value, _Mapping]] = ..., max_tag_length: _Optional[int] = ..., logging: _Optional[_Union[ExtensionProvider.StackdriverProvider.Logging, _Mapping]] = ...) -> None: ...
    class OpenCensusAgentTracingProvider(_message.Message):
        __slots__ = ("service", "port", "context", "max_tag_length")
        class TraceContext(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
            __slots__ = ()
            UNSPECIFIED: _ClassVar[ExtensionProvider.OpenCensusAgentTracingProvider.TraceContext]
            W3C_TRACE_CONTEXT: _ClassVar[ExtensionProvider.OpenCensusAgentTracingProvider.TraceContext]
            GRPC_BIN: _ClassVar[ExtensionProvider.OpenCensusAgentTracingProvider.TraceContext]
            CLOUD_TRACE_CONTEXT: _ClassVar[ExtensionProvider.OpenCensusAgentTracingProvider.TraceContext]
            B3: _ClassVar[ExtensionProvider.OpenCensusAgentTracingProvider.TraceContext]
        UNSPECIFIED: ExtensionProvider.OpenCensusAgentTracingProvider.TraceContext
        W3C_TRACE_CONTEXT: ExtensionProvider.OpenCensusAgentTracingProvider.TraceContext
        GRPC_BIN: ExtensionProvider.OpenCensusAgentTracingProvider.TraceContext
        CLOUD_TRACE_CONTEXT: ExtensionProvider.OpenCensusAgentTracingProvider.TraceContext
        B3: ExtensionProvider.OpenCensusAgentTracingProvider.TraceContext
        SERVICE_FIELD_NUMBER: _ClassVar[int]
        PORT_FIELD_NUMBER: _ClassVar[int]
        CONTEXT_FIELD_NUMBER: _ClassVar[int]
        MAX_TAG_LENGTH_FIELD_NUMBER: _ClassVar[int]
        service: str
        port: int
        context: _containers.RepeatedScalarFieldContainer[ExtensionProvider.OpenCensusAgentTracingProvider.TraceContext]
        max_tag_length: int
        def __init__(self, service: _Optional[str] = ..., port: _Optional[int] = ..., context: _Optional[_Iterable[_Union[ExtensionProvider.OpenCensusAgentTracingProvider.TraceContext, str]]] = ..., max_tag_length: _Optional[int] = ...) -> None: ...
    class PrometheusMetricsProvider(_message.Message):
        __slots__ = ()
        def __init__(self) -> None: ...
    class EnvoyFileAccessLogProvider(_message.Message):
        __slots__ = ("path", "log_format", "omit_empty_values")
        class LogFormat(_message.Message):
            __slots__ = ("text", "labels")
            TEXT_FIELD_NUMBER: _ClassVar[int]
            LABELS_FIELD_NUMBER: _ClassVar[int]
            text: str
            labels: _struct_pb2.Struct
            def __init__(self, text: _Optional[str] = ..., labels: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...
        PATH_FIELD_NUMBER: _ClassVar[int]
        LOG_FORMAT_FIELD_NUMBER: _ClassVar[int]
        OMIT_EMPTY_VALUES_FIELD_NUMBER: _ClassVar[int]
        path: str
        log_format: ExtensionProvider.EnvoyFileAccessLogProvider.LogFormat
        omit_empty_values: bool
        def __init__(self, path: _Optional[str] = ..., log_format: _Optional[_Union[ExtensionProvider.EnvoyFileAccessLogProvider.LogFormat, _Mapping]] = ..., omit_empty_values: _Optional[bool] = ...) -> None: ...
    class EnvoyHttpGrpcV3LogProvider(_message.Message):
        __slots__ = ("service", "port", "log_name", "filter_state_objects_to_log", "additional_request_headers_to_log", "additional_response_headers_to_log", "additional_response_trailers_to_log")
        SERVICE_FIELD_NUMBER: _ClassVar[int]
        PORT_FIELD_NUMBER: _ClassVar[int]
        LOG_NAME_FIELD_NUMBER: _ClassVar[int]
        FILTER_STATE_OBJECTS_TO_LOG_FIELD_NUMBER: _ClassVar[int]
        ADDITIONAL_REQUEST_HEADERS_TO_LOG_FIELD_NUMBER: _ClassVar[int]
        ADDITIONAL_RESPONSE_HEADERS_TO_LOG_FIELD_NUMBER: _ClassVar[int]
        ADDITIONAL_RESPONSE_TRAILERS_TO_LOG_FIELD_NUMBER: _ClassVar[int]
        service: str
        port: int
        log_name: str
        filter_state_objects_to_log: _containers.RepeatedScalarFieldContainer[str]
        additional_request_headers_to_log: _containers.RepeatedScalarFieldContainer[str]
        additional_response_headers_to_log: _containers.RepeatedScalarFieldContainer[str]
        additional_response_trailers_to_log: _containers.RepeatedScalarFieldContainer[str]
        def __init__(self, service: _Optional[str] = ..., port: _Optional[int] = ..., log_name: _Optional[str] = ..., filter_state_objects_to_log: _Optional[_Iterable[str]] = ..., additional_request_headers_to_log: _Optional[_Iterable[str]] = ..., additional_response_headers_to_log: _Optional[_Iterable[str]] = ..., additional_response_trailers_to_log: _Optional[_Iterable[str]] = ...) -> None: ...
    class EnvoyTcpGrpcV3LogProvider(_message.Message):
        __slots__ = ("service", "port", "log_name", "filter_state_objects_to_log")
        SERVICE_FIELD_NUMBER: _ClassVar[int]
        PORT_FIELD_NUMBER: _ClassVar[int]
        LOG_NAME_FIELD_NUMBER: _ClassVar[int]
        FILTER_STATE_OBJECTS_TO_LOG_FIELD_NUMBER: _ClassVar[int]
        service: str
        port: int
        log_name: str
        filter_state_objects_to_log: _containers.RepeatedScalarFieldContainer[str]
        def __init__(self, service: _Optional[str] = ..., port: _Optional[int] = ..., log_name: _Optional[str] = ..., filter_state_objects_to_log: _Optional[_Iterable[str]] = ...) -> None: ...
    class EnvoyOpenTelemetryLogProvider(_message.Message):
        __slots__ = ("service", "port", "log_name", "log_format")
        class LogFormat(_message.Message):
            __slots__ = ("text", "labels")
            TEXT_FIELD_NUMBER: _ClassVar[int]
            LABELS_FIELD_NUMBER: _ClassVar[int]
            text: str
            labels: _struct_pb2.Struct
            def __init__(self, text: _Optional[str] = ..., labels: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...
        SERVICE_FIELD_NUMBER: _ClassVar[int]
        PORT_FIELD_NUMBER: _ClassVar[int]
        LOG_NAME_FIELD_NUMBER: _ClassVar[int]
        LOG_FORMAT_FIELD_NUMBER: _ClassVar[int]
        service: str
        port: int
        log_name: str
        log_format: ExtensionProvider.EnvoyOpenTelemetryLogProvider.LogFormat
        def __init__(self, service: _Optional[str] = ..., port: _Optional[int] = ..., log_name: _Optional[str] = ..., log_format: _Optional[_Union[ExtensionProvider.EnvoyOpenTelemetryLogProvider.LogFormat, _Mapping]] = ...) -> None: ...
    class OpenTelemetryTracingProvider(_message.Message):
        __slots__ = ("service", "port", "max_tag_length", "http", "grpc", "resource_detectors", "service_attribute_enrichment", "dynatrace_sampler")
        class DynatraceSampler(_message.Message):
            __slots__ = ("tenant", "cluster_id", "root_spans_per_minute", "http_service")
            class DynatraceApi(_message.Message):
                __slots__ = ("service", "port", "http")
                SERVICE_FIELD_NUMBER: _ClassVar[int]
                PORT_FIELD_NUMBER: _ClassVar[int]
                HTTP_FIELD_NUMBER: _ClassVar[int]
                service: str
                port: int
                http: ExtensionProvider.HttpService
                def __init__(self, service: _Optional[str] = ..., port: _Optional[int] = ..., http: _Optional[_Union[ExtensionProvider.HttpService, _Mapping]] = ...) -> None: ...
            TENANT_FIELD_NUMBER: _ClassVar[int]
            CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
            ROOT_SPANS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
            HTTP_SERVICE_FIELD_NUMBER: _ClassVar[int]
            tenant: str
            cluster_id: int
            root_spans_per_minute: int
            http_service: ExtensionProvider.OpenTelemetryTracingProvider.DynatraceSampler.DynatraceApi
            def __init__(self, tenant: _Optional[str] = ..., cluster_id: _Optional[int] = ..., root_spans_per_minute: _Optional[int] = ..., http_service: _Optional[_Union[ExtensionProvider.OpenTelemetryTracingProvider.DynatraceSampler.DynatraceApi, _Mapping]] = ...) -> None: ...
        SERVICE_FIELD_NUMBER: _ClassVar[int]
        PORT_FIELD_NUMBER: _ClassVar[int]
        MAX_TAG_LENGTH_FIELD_NUMBER: _ClassVar[int]
        HTTP_FIELD_NUMBER: _ClassVar[int]
        GRPC_FIELD_NUMBER: _ClassVar[int]
        RESOURCE_DETECTORS_FIELD_NUMBER: _ClassVar[int]
        SERVICE_ATTRIBUTE_ENRICHMENT_FIELD_NUMBER: _ClassVar[int]
        DYNATRACE_SAMPLER_FIELD_NUMBER: _ClassVar[int]
        service: str
        port: int
        max_tag_length: int
        http: ExtensionProvider.HttpService
        grpc: ExtensionProvider.GrpcService
        resource_detectors: ExtensionProvider.ResourceDetectors
        service_attribute_enrichment: ExtensionProvider.ServiceAttributeEnrichment
        dynatrace_sampler: ExtensionProvider.OpenTelemetryTracingProvider.DynatraceSampler
        def __init__(self, service: _Optional[str] = ..., port: _Optional[int] = ..., max_tag_length: _Optional[int] = ..., http: _Optional[_Union[ExtensionProvider.HttpService, _Mapping]] = ..., grpc: _Optional[_Union[ExtensionProvider.GrpcService, _Mapping]] = ..., resource_detectors: _Optional[_Union[ExtensionProvider.ResourceDetectors, _Mapping]] = ..., service_attribute_enrichment: _Optional[_Union[ExtensionProvider.ServiceAttributeEnrichment, str]] = ..., dynatrace_sampler: _Optional[_Union[ExtensionProvider.OpenTelemetryTracingProvider.DynatraceSampler, _Mapping]] = ...) -> None: ...
    class SDSProvider(_message.Message):
        __slots__ = ("name", "service", "port")
        NAME_FIELD_NUMBER: _ClassVar[int]
        SERVICE_FIELD_NUMBER: _ClassVar[int]
        PORT_FIELD_NUMBER: _ClassVar[int]
        name: str
        service: str
        port: int
        def __init__(self, name: _Optional[str] = ..., service: _Optional[str] = ..., port: _Optional[int] = ...) -> None: ...
    class HttpService(_message.Message):
        __slots__ = ("path", "timeout", "headers")
        PATH_FIELD_NUMBER: _ClassVar[int]
        TIMEOUT_FIELD_NUMBER: _ClassVar[int]
        HEADERS_FIELD_NUMBER: _ClassVar[int]
        path: str
        timeout: _duration_pb2.Duration
        headers: _containers.RepeatedCompositeFieldContainer[ExtensionProvider.HttpHeader]
        def __init__(self, path: _Optional[str] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., headers: _Optional[_Iterable[_Union[ExtensionProvider.HttpHeader, _Mapping]]] = ...) -> None: ...
    class HttpHeader(_message.Message):
        __slots__ = ("name", "value", "env_name")
        NAME_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        ENV_NAME_FIELD_NUMBER: _ClassVar[int]
        name: str
        value: str
        env_name: str
        def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ..., env_name: _Optional[str] = ...) -> None: ...
    class ResourceDetectors(_message.Message):
        __slots__ = ("environment", "dynatrace")
        class EnvironmentResourceDetector(_message.Message):
            __slots__ = ()
            def __init__(self) -> None: ...
        class DynatraceResourceDetector(_message.Message):
            __slots__ = ()
            def __init__(self) -> None: ...
        ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
        DYNATRACE_FIELD_NUMBER: _ClassVar[int]
        environment: ExtensionProvider.ResourceDetectors.EnvironmentResourceDetector
        dynatrace: ExtensionProvider.ResourceDetectors.DynatraceResourceDetector
        def __init__(self, environment: _Optional[_Union[ExtensionProvider.ResourceDetectors.EnvironmentResourceDetector, _Mapping]] = ..., dynatrace: _Optional[_Union[ExtensionProvider.ResourceDetectors.DynatraceResourceDetector, _Mapping]] = ...) -> None: ...
    class GrpcService(_message.Message):
        __slots__ = ("timeout", "initial_metadata")
        TIMEOUT_FIELD_NUMBER: _ClassVar[int]
        INITIAL_METADATA_FIELD_NUMBER: _ClassVar[int]
        timeout: _duration_pb2.Duration
        initial_metadata: _containers.RepeatedCompositeFieldContainer[ExtensionProvider.HttpHeader]
        def __init__(self, timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., initial_metadata: _Optional[_Iterable[_Union[ExtensionProvider.HttpHeader, _Mapping]]] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENVOY_EXT_AUTHZ_HTTP_FIELD_NUMBER: _ClassVar[int]
    ENVOY_EXT_AUTHZ_GRPC_FIELD_NUMBER: _ClassVar[int]
    ZIPKIN_FIELD_NUMBER: _ClassVar[int]
    LIGHTSTEP_FIELD_NUMBER: _ClassVar[int]
    DATADOG_FIELD_NUMBER: _ClassVar[int]
    STACKDRIVER_FIELD_NUMBER: _ClassVar[int]
    OPENCENSUS_FIELD_NUMBER: _ClassVar[int]
    SKYWALKING_FIELD_NUMBER: _ClassVar[int]
    OPENTELEMETRY_FIELD_NUMBER: _ClassVar[int]
    PROMETHEUS_FIELD_NUMBER: _ClassVar[int]
    ENVOY_FILE_ACCESS_LOG_FIELD_NUMBER: _ClassVar[int]
    ENVOY_HTTP_ALS_FIELD_NUMBER: _ClassVar[int]
    ENVOY_TCP_ALS_FIELD_NUMBER: _ClassVar[int]
    ENVOY_OTEL_ALS_FIELD_NUMBER: _ClassVar[int]
    SDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    envoy_ext_authz_http: ExtensionProvider.EnvoyExternalAuthorizationHttpProvider
    envoy_ext_authz_grpc: ExtensionProvider.EnvoyExternalAuthorizationGrpcProvider
    zipkin: ExtensionProvider.ZipkinTracingProvider
    lightstep: ExtensionProvider.LightstepTracingProvider
    datadog: ExtensionProvider.DatadogTracingProvider
    stackdriver: ExtensionProvider.StackdriverProvider
    opencensus: ExtensionProvider.OpenCensusAgentTracingProvider
    skywalking: ExtensionProvider.SkyWalkingTracingProvider
    opentelemetry: ExtensionProvider.OpenTelemetryTracingProvider
    prometheus: ExtensionProvider.PrometheusMetricsProvider
    envoy_file_access_log: ExtensionProvider.EnvoyFileAccessLogProvider
    envoy_http_als: ExtensionProvider.EnvoyHttpGrpcV3LogProvider
    envoy_tcp_als: ExtensionProvider.EnvoyTcpGrpcV3LogProvider
    envoy_otel_als: ExtensionProvider.EnvoyOpenTelemetryLogProvider
    sds: ExtensionProvider.SDSProvider
    def __init__(self, name: _Optional[str] = ..., envoy_ext_authz_http: _Optional[_Union[ExtensionProvider.EnvoyExternalAuthorizationHttpProvider, _Mapping]] = ..., envoy_ext_authz_grpc: _Optional[_Union[ExtensionProvider.EnvoyExternalAuthorizationGrpcProvider, _Mapping]] = ..., zipkin: _Optional[_Union[ExtensionProvider.ZipkinTracingProvider, _Mapping]] = ..., lightstep: _Optional[_Union[ExtensionProvider.LightstepTracingProvider, _Mapping]] = ..., datadog: _Optional[_Union[ExtensionProvider.DatadogTracingProvider, _Mapping]] = ..., stackdriver: _Optional[_Union[ExtensionProvider.StackdriverProvider, _Mapping]] = ..., opencensus: _Optional[_Union[ExtensionProvider.OpenCensusAgentTracingProvider, _Mapping]] = ..., skywalking: _Optional[_Union[ExtensionProvider.SkyWalkingTracingProvider, _Mapping]] = ..., opentelemetry: _Optional[_Union[ExtensionProvider.OpenTelemetryTracingProvider, _Mapping]] = ..., prometheus: _Optional[_Union[ExtensionProvider.PrometheusMetricsProvider, _Mapping]] = ..., envoy_file_access_log: _Optional[_Union[ExtensionProvider.EnvoyFileAccessLogProvider, _Mapping]] = ..., envoy_http_als: _Optional[_Union[ExtensionProvider.EnvoyHttpGrpcV3LogProvider, _Mapping]] = ..., envoy_tcp_als: _Optional[_Union[ExtensionProvider.EnvoyTcpGrpcV3LogProvider, _Mapping]] = ..., envoy_otel_als: _Optional[_Union[ExtensionProvider.EnvoyOpenTelemetryLogProvider, _Mapping]] = ..., sds: _Optional[_Union[ExtensionProvider.SDSProvider, _Mapping]] = ...) -> None: ...

class Tracing(_message.Message):
    __slots__ = ("zipkin", "lightstep", "datadog", "stackdriver", "open_census_agent", "custom_tags", "max_path_tag_length", "sampling", "tls_settings", "enable_istio_tags")
    class Zipkin(_message.Message):
        __slots__ = ("address",)
        ADDRESS_FIELD_NUMBER: _ClassVar[int]
        address: str
        def __init__(self, address: _Optional[str] = ...) -> None: ...
    class Lightstep(_message.Message):
        __slots__ = ("address", "access_token")
        ADDRESS_FIELD_NUMBER: _ClassVar[int]
        ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
        address: str
        access_token: str
        def __init__(self, address: _Optional[str] = ..., access_token: _Optional[str] = ...) -> None: ...
    class Datadog(_message.Message):
        __slots__ = ("address",)
        ADDRESS_FIELD_NUMBER: _ClassVar[int]
        address: str
        def __init__(self, address: _Optional[str] = ...) -> None: ...
    class Stackdriver(_message.Message):
        __slots__ = ("debug", "max_number_of_attributes", "max_number_of_annotations", "max_number_of_message_events")
        DEBUG_FIELD_NUMBER: _ClassVar[int]
        MAX_NUMBER_OF_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
        MAX_NUMBER_OF_ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
        MAX_NUMBER_OF_MESSAGE_EVENTS_FIELD_NUMBER: _ClassVar[int]
        debug: bool
        max_number_of_attributes: _wrappers_pb2.Int64Value
        max_number_of_annotations: _wrappers_pb2.Int64Value
        max_number_of_message_events: _wrappers_pb2.Int64Value
        def __init__(self, debug: _Optional[bool] = ..., max_number_of_attributes: _Optional[_Union[_wrappers_pb2.Int64Value, _Mapping]] = ..., max_number_of_annotations: _Optional[_Union[_wrappers_pb2.Int64Value, _Mapping]] = ..., max_number_of_message_events: _Optional[_Union[_wrappers_pb2.Int64Value, _Mapping]] = ...) -> None: ...
    class OpenCensusAgent(_message.Message):
        __slots__ = ("address", "context")
        class TraceContext(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
            __slots__ = ()
            UNSPECIFIED: _ClassVar[Tracing.OpenCensusAgent.TraceContext]
            W3C_TRACE_CONTEXT: _ClassVar[Tracing.OpenCensusAgent.TraceContext]
            GRPC_BIN: _ClassVar[Tracing.OpenCensusAgent.TraceContext]
            CLOUD_TRACE_CONTEXT: _ClassVar[Tracing.OpenCensusAgent.TraceContext]
            B3: _ClassVar[Tracing.OpenCensusAgent.TraceContext]
        UNSPECIFIED: Tracing.OpenCensusAgent.TraceContext
        W3C_TRACE_CONTEXT: Tracing.OpenCensusAgent.TraceContext
        GRPC_BIN: Tracing.OpenCensusAgent.TraceContext
        CLOUD_TRACE_CONTEXT: Tracing.OpenCensusAgent.TraceContext
        B3: Tracing.OpenCensusAgent.TraceContext
        ADDRESS_FIELD_NUMBER: _ClassVar[int]
        CONTEXT_FIELD_NUMBER: _ClassVar[int]
        address: str
        context: _containers.RepeatedScalarFieldContainer[Tracing.OpenCensusAgent.TraceContext]
        def __init__(self, address: _Optional[str] = ..., context: _Optional[_Iterable[_Union[Tracing.OpenCensusAgent.TraceContext, str]]] = ...) -> None: ...
    class CustomTag(_message.Message):
        __slots__ = ("literal", "environment", "header")
        LITERAL_FIELD_NUMBER: _ClassVar[int]
        ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
        HEADER_FIELD_NUMBER: _ClassVar[int]
        literal: Tracing.Literal
        environment: Tracing.Environment
        header: Tracing.RequestHeader
        def __init__(self, literal: _Optional[_Union[Tracing.Literal, _Mapping]] = ..., environment: _Optional[_Union[Tracing.Environment, _Mapping]] = ..., header: _Optional[_Union[Tracing.RequestHeader, _Mapping]] = ...) -> None: ...
    class Literal(_message.Message):
        __slots__ = ("value",)
        VALUE_FIELD_NUMBER: _ClassVar[int]
        value: str
        def __init__(self, value: _Optional[str] = ...) -> None: ...
    class Environment(_message.Message):
        __slots__ = ("name", "default_value")
        NAME_FIELD_NUMBER: _ClassVar[int]
        DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
        name: str
        default_value: str
        def __init__(self, name: _Optional[str] = ..., default_value: _Optional[str] = ...) -> None: ...
    class RequestHeader(_message.Message):
        __slots__ = ("name", "default_value")
        NAME_FIELD_NUMBER: _ClassVar[int]
        DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
        name: str
        default_value: str
        def __init__(self, name: _Optional[str] = ..., default_value: _Optional[str] = ...) -> None: ...
    class CustomTagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Tracing.CustomTag
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Tracing.CustomTag, _Mapping]] = ...) -> None: ...
    ZIPKIN_FIELD_NUMBER: _ClassVar[int]
    LIGHTSTEP_FIELD_NUMBER: _ClassVar[int]
    DATADOG_FIELD_NUMBER: _ClassVar[int]
    STACKDRIVER_FIELD_NUMBER: _ClassVar[int]
    OPEN_CENSUS_AGENT_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_TAGS_FIELD_NUMBER: _ClassVar[int]
    MAX_PATH_TAG_LENGTH_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    TLS_SETTINGS_FIELD_NUMBER: _ClassVar[int]
    ENABLE_ISTIO_TAGS_FIELD_NUMBER: _ClassVar[int]
    zipkin: Tracing.Zipkin
    lightstep: Tracing.Lightstep
    datadog: Tracing.Datadog
    stackdriver: Tracing.Stackdriver
    open_census_agent: Tracing.OpenCensusAgent
    custom_tags: _containers.MessageMap[str, Tracing.CustomTag]
    max_path_tag_length: int
    sampling: float
    tls_settings: _destination_rule_pb2.ClientTLSSettings
    enable_istio_tags: _wrappers_pb2.BoolValue
    def __init__(self, zipkin: _Optional[_Union[Tracing.Zipkin, _Mapping]] = ..., lightstep: _Optional[_Union[Tracing.Lightstep, _Mapping]] = ..., datadog: _Optional[_Union[Tracing.Datadog, _Mapping]] = ..., stackdriver: _Optional[_Union[Tracing.Stackdriver, _Mapping]] = ..., open_census_agent: _Optional[_Union[Tracing.OpenCensusAgent, _Mapping]] = ..., custom_tags: _Optional[_Mapping[str, Tracing.CustomTag]] = ..., max_path_tag_length: _Optional[int] = ..., sampling: _Optional[float] = ..., tls_settings: _Optional[_Union[_destination_rule_pb2.ClientTLSSettings, _Mapping]] = ..., enable_istio_tags: _Optional[_Union[_wrappers_pb2.BoolValue, _Mapping]] = ...) -> None: ...
