from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ParentReference(_message.Message):
    __slots__ = ("group", "kind", "namespace", "name", "section_name", "port")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SECTION_NAME_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    group: str
    kind: str
    namespace: str
    name: str
    section_name: str
    port: int
    def __init__(self, group: _Optional[str] = ..., kind: _Optional[str] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ..., section_name: _Optional[str] = ..., port: _Optional[int] = ...) -> None: ...

class BackendObjectReference(_message.Message):
    __slots__ = ("group", "kind", "name", "namespace", "port")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    group: str
    kind: str
    name: str
    namespace: str
    port: int
    def __init__(self, group: _Optional[str] = ..., kind: _Optional[str] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ..., port: _Optional[int] = ...) -> None: ...

class BackendRef(_message.Message):
    __slots__ = ("group", "kind", "name", "namespace", "port", "weight")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    group: str
    kind: str
    name: str
    namespace: str
    port: int
    weight: int
    def __init__(self, group: _Optional[str] = ..., kind: _Optional[str] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ..., port: _Optional[int] = ..., weight: _Optional[int] = ...) -> None: ...

class SecretObjectReference(_message.Message):
    __slots__ = ("group", "kind", "name", "namespace")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    group: str
    kind: str
    name: str
    namespace: str
    def __init__(self, group: _Optional[str] = ..., kind: _Optional[str] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ...) -> None: ...

class ObjectReference(_message.Message):
    __slots__ = ("group", "kind", "name", "namespace")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    group: str
    kind: str
    name: str
    namespace: str
    def __init__(self, group: _Optional[str] = ..., kind: _Optional[str] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ...) -> None: ...

class LocalObjectReference(_message.Message):
    __slots__ = ("group", "kind", "name")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    group: str
    kind: str
    name: str
    def __init__(self, group: _Optional[str] = ..., kind: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class LabelSelectorRequirement(_message.Message):
    __slots__ = ("key", "operator", "values")
    KEY_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    key: str
    operator: str
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, key: _Optional[str] = ..., operator: _Optional[str] = ..., values: _Optional[_Iterable[str]] = ...) -> None: ...

class LabelSelector(_message.Message):
    __slots__ = ("match_labels", "match_expressions")
    class MatchLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MATCH_LABELS_FIELD_NUMBER: _ClassVar[int]
    MATCH_EXPRESSIONS_FIELD_NUMBER: _ClassVar[int]
    match_labels: _containers.ScalarMap[str, str]
    match_expressions: _containers.RepeatedCompositeFieldContainer[LabelSelectorRequirement]
    def __init__(self, match_labels: _Optional[_Mapping[str, str]] = ..., match_expressions: _Optional[_Iterable[_Union[LabelSelectorRequirement, _Mapping]]] = ...) -> None: ...

class CookieConfig(_message.Message):
    __slots__ = ("lifetime_type",)
    LIFETIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    lifetime_type: str
    def __init__(self, lifetime_type: _Optional[str] = ...) -> None: ...

class SessionPersistence(_message.Message):
    __slots__ = ("session_name", "absolute_timeout", "type", "cookie_config")
    SESSION_NAME_FIELD_NUMBER: _ClassVar[int]
    ABSOLUTE_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    COOKIE_CONFIG_FIELD_NUMBER: _ClassVar[int]
    session_name: str
    absolute_timeout: str
    type: str
    cookie_config: CookieConfig
    def __init__(self, session_name: _Optional[str] = ..., absolute_timeout: _Optional[str] = ..., type: _Optional[str] = ..., cookie_config: _Optional[_Union[CookieConfig, _Mapping]] = ...) -> None: ...

class Fraction(_message.Message):
    __slots__ = ("numerator", "denominator")
    NUMERATOR_FIELD_NUMBER: _ClassVar[int]
    DENOMINATOR_FIELD_NUMBER: _ClassVar[int]
    numerator: int
    denominator: int
    def __init__(self, numerator: _Optional[int] = ..., denominator: _Optional[int] = ...) -> None: ...

class ParametersReference(_message.Message):
    __slots__ = ("group", "kind", "name", "namespace")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    group: str
    kind: str
    name: str
    namespace: str
    def __init__(self, group: _Optional[str] = ..., kind: _Optional[str] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ...) -> None: ...

class GatewayClassSpec(_message.Message):
    __slots__ = ("controller_name", "parameters_ref", "description")
    CONTROLLER_NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_REF_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    controller_name: str
    parameters_ref: ParametersReference
    description: str
    def __init__(self, controller_name: _Optional[str] = ..., parameters_ref: _Optional[_Union[ParametersReference, _Mapping]] = ..., description: _Optional[str] = ...) -> None: ...

class RouteGroupKind(_message.Message):
    __slots__ = ("group", "kind")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    group: str
    kind: str
    def __init__(self, group: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class RouteNamespaces(_message.Message):
    __slots__ = ("selector",)
    FROM_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    selector: LabelSelector
    def __init__(self, selector: _Optional[_Union[LabelSelector, _Mapping]] = ..., **kwargs) -> None: ...

class AllowedRoutes(_message.Message):
    __slots__ = ("namespaces", "kinds")
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    namespaces: RouteNamespaces
    kinds: _containers.RepeatedCompositeFieldContainer[RouteGroupKind]
    def __init__(self, namespaces: _Optional[_Union[RouteNamespaces, _Mapping]] = ..., kinds: _Optional[_Iterable[_Union[RouteGroupKind, _Mapping]]] = ...) -> None: ...

class ListenerTLSConfig(_message.Message):
    __slots__ = ("mode", "certificate_refs", "options")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_REFS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    mode: str
    certificate_refs: _containers.RepeatedCompositeFieldContainer[SecretObjectReference]
    options: _containers.ScalarMap[str, str]
    def __init__(self, mode: _Optional[str] = ..., certificate_refs: _Optional[_Iterable[_Union[SecretObjectReference, _Mapping]]] = ..., options: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Listener(_message.Message):
    __slots__ = ("name", "hostname", "port", "protocol", "tls", "allowed_routes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_ROUTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    hostname: str
    port: int
    protocol: str
    tls: ListenerTLSConfig
    allowed_routes: AllowedRoutes
    def __init__(self, name: _Optional[str] = ..., hostname: _Optional[str] = ..., port: _Optional[int] = ..., protocol: _Optional[str] = ..., tls: _Optional[_Union[ListenerTLSConfig, _Mapping]] = ..., allowed_routes: _Optional[_Union[AllowedRoutes, _Mapping]] = ...) -> None: ...

class GatewaySpecAddress(_message.Message):
    __slots__ = ("type", "value")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    type: str
    value: str
    def __init__(self, type: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class LocalParametersReference(_message.Message):
    __slots__ = ("group", "kind", "name")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    group: str
    kind: str
    name: str
    def __init__(self, group: _Optional[str] = ..., kind: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class GatewayInfrastructure(_message.Message):
    __slots__ = ("labels", "annotations", "parameters_ref")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class AnnotationsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_REF_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.ScalarMap[str, str]
    annotations: _containers.ScalarMap[str, str]
    parameters_ref: LocalParametersReference
    def __init__(self, labels: _Optional[_Mapping[str, str]] = ..., annotations: _Optional[_Mapping[str, str]] = ..., parameters_ref: _Optional[_Union[LocalParametersReference, _Mapping]] = ...) -> None: ...

class ListenerNamespaces(_message.Message):
    __slots__ = ("selector",)
    FROM_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    selector: LabelSelector
    def __init__(self, selector: _Optional[_Union[LabelSelector, _Mapping]] = ..., **kwargs) -> None: ...

class AllowedListeners(_message.Message):
    __slots__ = ("namespaces",)
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    namespaces: ListenerNamespaces
    def __init__(self, namespaces: _Optional[_Union[ListenerNamespaces, _Mapping]] = ...) -> None: ...

class GatewayBackendTLS(_message.Message):
    __slots__ = ("client_certificate_ref",)
    CLIENT_CERTIFICATE_REF_FIELD_NUMBER: _ClassVar[int]
    client_certificate_ref: SecretObjectReference
    def __init__(self, client_certificate_ref: _Optional[_Union[SecretObjectReference, _Mapping]] = ...) -> None: ...

class FrontendTLSValidation(_message.Message):
    __slots__ = ("ca_certificate_refs", "mode")
    CA_CERTIFICATE_REFS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    ca_certificate_refs: _containers.RepeatedCompositeFieldContainer[ObjectReference]
    mode: str
    def __init__(self, ca_certificate_refs: _Optional[_Iterable[_Union[ObjectReference, _Mapping]]] = ..., mode: _Optional[str] = ...) -> None: ...

class TLSConfig(_message.Message):
    __slots__ = ("validation",)
    VALIDATION_FIELD_NUMBER: _ClassVar[int]
    validation: FrontendTLSValidation
    def __init__(self, validation: _Optional[_Union[FrontendTLSValidation, _Mapping]] = ...) -> None: ...

class TLSPortConfig(_message.Message):
    __slots__ = ("port", "tls")
    PORT_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    port: int
    tls: TLSConfig
    def __init__(self, port: _Optional[int] = ..., tls: _Optional[_Union[TLSConfig, _Mapping]] = ...) -> None: ...

class FrontendTLSConfig(_message.Message):
    __slots__ = ("default", "per_port")
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    PER_PORT_FIELD_NUMBER: _ClassVar[int]
    default: TLSConfig
    per_port: _containers.RepeatedCompositeFieldContainer[TLSPortConfig]
    def __init__(self, default: _Optional[_Union[TLSConfig, _Mapping]] = ..., per_port: _Optional[_Iterable[_Union[TLSPortConfig, _Mapping]]] = ...) -> None: ...

class GatewayTLSConfig(_message.Message):
    __slots__ = ("backend", "frontend")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    FRONTEND_FIELD_NUMBER: _ClassVar[int]
    backend: GatewayBackendTLS
    frontend: FrontendTLSConfig
    def __init__(self, backend: _Optional[_Union[GatewayBackendTLS, _Mapping]] = ..., frontend: _Optional[_Union[FrontendTLSConfig, _Mapping]] = ...) -> None: ...

class GatewaySpec(_message.Message):
    __slots__ = ("gateway_class_name", "listeners", "addresses", "infrastructure", "allowed_listeners", "tls", "default_scope")
    GATEWAY_CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    LISTENERS_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    INFRASTRUCTURE_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_LISTENERS_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_SCOPE_FIELD_NUMBER: _ClassVar[int]
    gateway_class_name: str
    listeners: _containers.RepeatedCompositeFieldContainer[Listener]
    addresses: _containers.RepeatedCompositeFieldContainer[GatewaySpecAddress]
    infrastructure: GatewayInfrastructure
    allowed_listeners: AllowedListeners
    tls: GatewayTLSConfig
    default_scope: str
    def __init__(self, gateway_class_name: _Optional[str] = ..., listeners: _Optional[_Iterable[_Union[Listener, _Mapping]]] = ..., addresses: _Optional[_Iterable[_Union[GatewaySpecAddress, _Mapping]]] = ..., infrastructure: _Optional[_Union[GatewayInfrastructure, _Mapping]] = ..., allowed_listeners: _Optional[_Union[AllowedListeners, _Mapping]] = ..., tls: _Optional[_Union[GatewayTLSConfig, _Mapping]] = ..., default_scope: _Optional[str] = ...) -> None: ...

class HTTPPathMatch(_message.Message):
    __slots__ = ("type", "value")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    type: str
    value: str
    def __init__(self, type: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class HTTPHeaderMatch(_message.Message):
    __slots__ = ("type", "name", "value")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    type: str
    name: str
    value: str
    def __init__(self, type: _Optional[str] = ..., name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class HTTPQueryParamMatch(_message.Message):
    __slots__ = ("type", "name", "value")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    type: str
    name: str
    value: str
    def __init__(self, type: _Optional[str] = ..., name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class HTTPRouteMatch(_message.Message):
    __slots__ = ("path", "headers", "query_params", "method")
    PATH_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    QUERY_PARAMS_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    path: HTTPPathMatch
    headers: _containers.RepeatedCompositeFieldContainer[HTTPHeaderMatch]
    query_params: _containers.RepeatedCompositeFieldContainer[HTTPQueryParamMatch]
    method: str
    def __init__(self, path: _Optional[_Union[HTTPPathMatch, _Mapping]] = ..., headers: _Optional[_Iterable[_Union[HTTPHeaderMatch, _Mapping]]] = ..., query_params: _Optional[_Iterable[_Union[HTTPQueryParamMatch, _Mapping]]] = ..., method: _Optional[str] = ...) -> None: ...

class HTTPHeader(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class HTTPHeaderFilter(_message.Message):
    __slots__ = ("set", "add", "remove")
    SET_FIELD_NUMBER: _ClassVar[int]
    ADD_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    set: _containers.RepeatedCompositeFieldContainer[HTTPHeader]
    add: _containers.RepeatedCompositeFieldContainer[HTTPHeader]
    remove: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, set: _Optional[_Iterable[_Union[HTTPHeader, _Mapping]]] = ..., add: _Optional[_Iterable[_Union[HTTPHeader, _Mapping]]] = ..., remove: _Optional[_Iterable[str]] = ...) -> None: ...

class HTTPPathModifier(_message.Message):
    __slots__ = ("type", "replace_full_path", "replace_prefix_match")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FULL_PATH_FIELD_NUMBER: _ClassVar[int]
    REPLACE_PREFIX_MATCH_FIELD_NUMBER: _ClassVar[int]
    type: str
    replace_full_path: str
    replace_prefix_match: str
    def __init__(self, type: _Optional[str] = ..., replace_full_path: _Optional[str] = ..., replace_prefix_match: _Optional[str] = ...) -> None: ...

class HTTPRequestRedirectFilter(_message.Message):
    __slots__ = ("scheme", "hostname", "path", "port", "status_code")
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    scheme: str
    hostname: str
    path: HTTPPathModifier
    port: int
    status_code: int
    def __init__(self, scheme: _Optional[str] = ..., hostname: _Optional[str] = ..., path: _Optional[_Union[HTTPPathModifier, _Mapping]] = ..., port: _Optional[int] = ..., status_code: _Optional[int] = ...) -> None: ...

class HTTPURLRewriteFilter(_message.Message):
    __slots__ = ("hostname", "path")
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    hostname: str
    path: HTTPPathModifier
    def __init__(self, hostname: _Optional[str] = ..., path: _Optional[_Union[HTTPPathModifier, _Mapping]] = ...) -> None: ...

class HTTPRequestMirrorFilter(_message.Message):
    __slots__ = ("backend_ref", "percent", "fraction")
    BACKEND_REF_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    backend_ref: BackendObjectReference
    percent: int
    fraction: Fraction
    def __init__(self, backend_ref: _Optional[_Union[BackendObjectReference, _Mapping]] = ..., percent: _Optional[int] = ..., fraction: _Optional[_Union[Fraction, _Mapping]] = ...) -> None: ...

class HTTPCORSFilter(_message.Message):
    __slots__ = ("allow_origins", "allow_credentials", "allow_methods", "allow_headers", "expose_headers", "max_age")
    ALLOW_ORIGINS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_METHODS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_HEADERS_FIELD_NUMBER: _ClassVar[int]
    EXPOSE_HEADERS_FIELD_NUMBER: _ClassVar[int]
    MAX_AGE_FIELD_NUMBER: _ClassVar[int]
    allow_origins: _containers.RepeatedScalarFieldContainer[str]
    allow_credentials: bool
    allow_methods: _containers.RepeatedScalarFieldContainer[str]
    allow_headers: _containers.RepeatedScalarFieldContainer[str]
    expose_headers: _containers.RepeatedScalarFieldContainer[str]
    max_age: int
    def __init__(self, allow_origins: _Optional[_Iterable[str]] = ..., allow_credentials: _Optional[bool] = ..., allow_methods: _Optional[_Iterable[str]] = ..., allow_headers: _Optional[_Iterable[str]] = ..., expose_headers: _Optional[_Iterable[str]] = ..., max_age: _Optional[int] = ...) -> None: ...

class GRPCAuthConfig(_message.Message):
    __slots__ = ("allowed_headers",)
    ALLOWED_HEADERS_FIELD_NUMBER: _ClassVar[int]
    allowed_headers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, allowed_headers: _Optional[_Iterable[str]] = ...) -> None: ...

class HTTPAuthConfig(_message.Message):
    __slots__ = ("path", "allowed_headers", "allowed_response_headers")
    PATH_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_HEADERS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_RESPONSE_HEADERS_FIELD_NUMBER: _ClassVar[int]
    path: str
    allowed_headers: _containers.RepeatedScalarFieldContainer[str]
    allowed_response_headers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, path: _Optional[str] = ..., allowed_headers: _Optional[_Iterable[str]] = ..., allowed_response_headers: _Optional[_Iterable[str]] = ...) -> None: ...

class ForwardBodyConfig(_message.Message):
    __slots__ = ("max_size",)
    MAX_SIZE_FIELD_NUMBER: _ClassVar[int]
    max_size: int
    def __init__(self, max_size: _Optional[int] = ...) -> None: ...

class HTTPExternalAuthFilter(_message.Message):
    __slots__ = ("protocol", "backend_ref", "grpc", "http", "forward_body")
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    BACKEND_REF_FIELD_NUMBER: _ClassVar[int]
    GRPC_FIELD_NUMBER: _ClassVar[int]
    HTTP_FIELD_NUMBER: _ClassVar[int]
    FORWARD_BODY_FIELD_NUMBER: _ClassVar[int]
    protocol: str
    backend_ref: BackendObjectReference
    grpc: GRPCAuthConfig
    http: HTTPAuthConfig
    forward_body: ForwardBodyConfig
    def __init__(self, protocol: _Optional[str] = ..., backend_ref: _Optional[_Union[BackendObjectReference, _Mapping]] = ..., grpc: _Optional[_Union[GRPCAuthConfig, _Mapping]] = ..., http: _Optional[_Union[HTTPAuthConfig, _Mapping]] = ..., forward_body: _Optional[_Union[ForwardBodyConfig, _Mapping]] = ...) -> None: ...

class HTTPRouteFilter(_message.Message):
    __slots__ = ("type", "request_header_modifier", "response_header_modifier", "request_mirror", "request_redirect", "url_rewrite", "cors", "external_auth", "extension_ref")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_HEADER_MODIFIER_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_HEADER_MODIFIER_FIELD_NUMBER: _ClassVar[int]
    REQUEST_MIRROR_FIELD_NUMBER: _ClassVar[int]
    REQUEST_REDIRECT_FIELD_NUMBER: _ClassVar[int]
    URL_REWRITE_FIELD_NUMBER: _ClassVar[int]
    CORS_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_AUTH_FIELD_NUMBER: _ClassVar[int]
    EXTENSION_REF_FIELD_NUMBER: _ClassVar[int]
    type: str
    request_header_modifier: HTTPHeaderFilter
    response_header_modifier: HTTPHeaderFilter
    request_mirror: HTTPRequestMirrorFilter
    request_redirect: HTTPRequestRedirectFilter
    url_rewrite: HTTPURLRewriteFilter
    cors: HTTPCORSFilter
    external_auth: HTTPExternalAuthFilter
    extension_ref: LocalObjectReference
    def __init__(self, type: _Optional[str] = ..., request_header_modifier: _Optional[_Union[HTTPHeaderFilter, _Mapping]] = ..., response_header_modifier: _Optional[_Union[HTTPHeaderFilter, _Mapping]] = ..., request_mirror: _Optional[_Union[HTTPRequestMirrorFilter, _Mapping]] = ..., request_redirect: _Optional[_Union[HTTPRequestRedirectFilter, _Mapping]] = ..., url_rewrite: _Optional[_Union[HTTPURLRewriteFilter, _Mapping]] = ..., cors: _Optional[_Union[HTTPCORSFilter, _Mapping]] = ..., external_auth: _Optional[_Union[HTTPExternalAuthFilter, _Mapping]] = ..., extension_ref: _Optional[_Union[LocalObjectReference, _Mapping]] = ...) -> None: ...

class HTTPBackendRef(_message.Message):
    __slots__ = ("group", "kind", "name", "namespace", "port", "weight", "filters")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    group: str
    kind: str
    name: str
    namespace: str
    port: int
    weight: int
    filters: _containers.RepeatedCompositeFieldContainer[HTTPRouteFilter]
    def __init__(self, group: _Optional[str] = ..., kind: _Optional[str] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ..., port: _Optional[int] = ..., weight: _Optional[int] = ..., filters: _Optional[_Iterable[_Union[HTTPRouteFilter, _Mapping]]] = ...) -> None: ...

class HTTPRouteTimeouts(_message.Message):
    __slots__ = ("request", "backend_request")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    BACKEND_REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: str
    backend_request: str
    def __init__(self, request: _Optional[str] = ..., backend_request: _Optional[str] = ...) -> None: ...

class HTTPRouteRetry(_message.Message):
    __slots__ = ("codes", "attempts", "backoff")
    CODES_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_FIELD_NUMBER: _ClassVar[int]
    codes: _containers.RepeatedScalarFieldContainer[int]
    attempts: int
    backoff: str
    def __init__(self, codes: _Optional[_Iterable[int]] = ..., attempts: _Optional[int] = ..., backoff: _Optional[str] = ...) -> None: ...

class HTTPRouteRule(_message.Message):
    __slots__ = ("name", "matches", "filters", "backend_refs", "timeouts", "retry", "session_persistence")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_REFS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUTS_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    SESSION_PERSISTENCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    matches: _containers.RepeatedCompositeFieldContainer[HTTPRouteMatch]
    filters: _containers.RepeatedCompositeFieldContainer[HTTPRouteFilter]
    backend_refs: _containers.RepeatedCompositeFieldContainer[HTTPBackendRef]
    timeouts: HTTPRouteTimeouts
    retry: HTTPRouteRetry
    session_persistence: SessionPersistence
    def __init__(self, name: _Optional[str] = ..., matches: _Optional[_Iterable[_Union[HTTPRouteMatch, _Mapping]]] = ..., filters: _Optional[_Iterable[_Union[HTTPRouteFilter, _Mapping]]] = ..., backend_refs: _Optional[_Iterable[_Union[HTTPBackendRef, _Mapping]]] = ..., timeouts: _Optional[_Union[HTTPRouteTimeouts, _Mapping]] = ..., retry: _Optional[_Union[HTTPRouteRetry, _Mapping]] = ..., session_persistence: _Optional[_Union[SessionPersistence, _Mapping]] = ...) -> None: ...

class HTTPRouteSpec(_message.Message):
    __slots__ = ("parent_refs", "use_default_gateways", "hostnames", "rules")
    PARENT_REFS_FIELD_NUMBER: _ClassVar[int]
    USE_DEFAULT_GATEWAYS_FIELD_NUMBER: _ClassVar[int]
    HOSTNAMES_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    parent_refs: _containers.RepeatedCompositeFieldContainer[ParentReference]
    use_default_gateways: str
    hostnames: _containers.RepeatedScalarFieldContainer[str]
    rules: _containers.RepeatedCompositeFieldContainer[HTTPRouteRule]
    def __init__(self, parent_refs: _Optional[_Iterable[_Union[ParentReference, _Mapping]]] = ..., use_default_gateways: _Optional[str] = ..., hostnames: _Optional[_Iterable[str]] = ..., rules: _Optional[_Iterable[_Union[HTTPRouteRule, _Mapping]]] = ...) -> None: ...

class GRPCMethodMatch(_message.Message):
    __slots__ = ("type", "service", "method")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    type: str
    service: str
    method: str
    def __init__(self, type: _Optional[str] = ..., service: _Optional[str] = ..., method: _Optional[str] = ...) -> None: ...

class GRPCHeaderMatch(_message.Message):
    __slots__ = ("type", "name", "value")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    type: str
    name: str
    value: str
    def __init__(self, type: _Optional[str] = ..., name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class GRPCRouteMatch(_message.Message):
    __slots__ = ("method", "headers")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    method: GRPCMethodMatch
    headers: _containers.RepeatedCompositeFieldContainer[GRPCHeaderMatch]
    def __init__(self, method: _Optional[_Union[GRPCMethodMatch, _Mapping]] = ..., headers: _Optional[_Iterable[_Union[GRPCHeaderMatch, _Mapping]]] = ...) -> None: ...

class GRPCRouteFilter(_message.Message):
    __slots__ = ("type", "request_header_modifier", "response_header_modifier", "request_mirror", "extension_ref")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_HEADER_MODIFIER_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_HEADER_MODIFIER_FIELD_NUMBER: _ClassVar[int]
    REQUEST_MIRROR_FIELD_NUMBER: _ClassVar[int]
    EXTENSION_REF_FIELD_NUMBER: _ClassVar[int]
    type: str
    request_header_modifier: HTTPHeaderFilter
    response_header_modifier: HTTPHeaderFilter
    request_mirror: HTTPRequestMirrorFilter
    extension_ref: LocalObjectReference
    def __init__(self, type: _Optional[str] = ..., request_header_modifier: _Optional[_Union[HTTPHeaderFilter, _Mapping]] = ..., response_header_modifier: _Optional[_Union[HTTPHeaderFilter, _Mapping]] = ..., request_mirror: _Optional[_Union[HTTPRequestMirrorFilter, _Mapping]] = ..., extension_ref: _Optional[_Union[LocalObjectReference, _Mapping]] = ...) -> None: ...

class GRPCBackendRef(_message.Message):
    __slots__ = ("group", "kind", "name", "namespace", "port", "weight", "filters")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    group: str
    kind: str
    name: str
    namespace: str
    port: int
    weight: int
    filters: _containers.RepeatedCompositeFieldContainer[GRPCRouteFilter]
    def __init__(self, group: _Optional[str] = ..., kind: _Optional[str] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ..., port: _Optional[int] = ..., weight: _Optional[int] = ..., filters: _Optional[_Iterable[_Union[GRPCRouteFilter, _Mapping]]] = ...) -> None: ...

class GRPCRouteRule(_message.Message):
    __slots__ = ("name", "matches", "filters", "backend_refs", "session_persistence")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_REFS_FIELD_NUMBER: _ClassVar[int]
    SESSION_PERSISTENCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    matches: _containers.RepeatedCompositeFieldContainer[GRPCRouteMatch]
    filters: _containers.RepeatedCompositeFieldContainer[GRPCRouteFilter]
    backend_refs: _containers.RepeatedCompositeFieldContainer[GRPCBackendRef]
    session_persistence: SessionPersistence
    def __init__(self, name: _Optional[str] = ..., matches: _Optional[_Iterable[_Union[GRPCRouteMatch, _Mapping]]] = ..., filters: _Optional[_Iterable[_Union[GRPCRouteFilter, _Mapping]]] = ..., backend_refs: _Optional[_Iterable[_Union[GRPCBackendRef, _Mapping]]] = ..., session_persistence: _Optional[_Union[SessionPersistence, _Mapping]] = ...) -> None: ...

class GRPCRouteSpec(_message.Message):
    __slots__ = ("parent_refs", "use_default_gateways", "hostnames", "rules")
    PARENT_REFS_FIELD_NUMBER: _ClassVar[int]
    USE_DEFAULT_GATEWAYS_FIELD_NUMBER: _ClassVar[int]
    HOSTNAMES_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    parent_refs: _containers.RepeatedCompositeFieldContainer[ParentReference]
    use_default_gateways: str
    hostnames: _containers.RepeatedScalarFieldContainer[str]
    rules: _containers.RepeatedCompositeFieldContainer[GRPCRouteRule]
    def __init__(self, parent_refs: _Optional[_Iterable[_Union[ParentReference, _Mapping]]] = ..., use_default_gateways: _Optional[str] = ..., hostnames: _Optional[_Iterable[str]] = ..., rules: _Optional[_Iterable[_Union[GRPCRouteRule, _Mapping]]] = ...) -> None: ...

class L4RouteRule(_message.Message):
    __slots__ = ("name", "backend_refs")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BACKEND_REFS_FIELD_NUMBER: _ClassVar[int]
    name: str
    backend_refs: _containers.RepeatedCompositeFieldContainer[BackendRef]
    def __init__(self, name: _Optional[str] = ..., backend_refs: _Optional[_Iterable[_Union[BackendRef, _Mapping]]] = ...) -> None: ...

class TCPRouteSpec(_message.Message):
    __slots__ = ("parent_refs", "use_default_gateways", "rules")
    PARENT_REFS_FIELD_NUMBER: _ClassVar[int]
    USE_DEFAULT_GATEWAYS_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    parent_refs: _containers.RepeatedCompositeFieldContainer[ParentReference]
    use_default_gateways: str
    rules: _containers.RepeatedCompositeFieldContainer[L4RouteRule]
    def __init__(self, parent_refs: _Optional[_Iterable[_Union[ParentReference, _Mapping]]] = ..., use_default_gateways: _Optional[str] = ..., rules: _Optional[_Iterable[_Union[L4RouteRule, _Mapping]]] = ...) -> None: ...

class TLSRouteSpec(_message.Message):
    __slots__ = ("parent_refs", "use_default_gateways", "hostnames", "rules")
    PARENT_REFS_FIELD_NUMBER: _ClassVar[int]
    USE_DEFAULT_GATEWAYS_FIELD_NUMBER: _ClassVar[int]
    HOSTNAMES_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    parent_refs: _containers.RepeatedCompositeFieldContainer[ParentReference]
    use_default_gateways: str
    hostnames: _containers.RepeatedScalarFieldContainer[str]
    rules: _containers.RepeatedCompositeFieldContainer[L4RouteRule]
    def __init__(self, parent_refs: _Optional[_Iterable[_Union[ParentReference, _Mapping]]] = ..., use_default_gateways: _Optional[str] = ..., hostnames: _Optional[_Iterable[str]] = ..., rules: _Optional[_Iterable[_Union[L4RouteRule, _Mapping]]] = ...) -> None: ...

class ReferenceGrantFrom(_message.Message):
    __slots__ = ("group", "kind", "namespace")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    group: str
    kind: str
    namespace: str
    def __init__(self, group: _Optional[str] = ..., kind: _Optional[str] = ..., namespace: _Optional[str] = ...) -> None: ...

class ReferenceGrantTo(_message.Message):
    __slots__ = ("group", "kind", "name")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    group: str
    kind: str
    name: str
    def __init__(self, group: _Optional[str] = ..., kind: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ReferenceGrantSpec(_message.Message):
    __slots__ = ("to",)
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    to: _containers.RepeatedCompositeFieldContainer[ReferenceGrantTo]
    def __init__(self, to: _Optional[_Iterable[_Union[ReferenceGrantTo, _Mapping]]] = ..., **kwargs) -> None: ...
