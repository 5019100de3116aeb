"""AuthorizationPolicy action CUSTOM -> Envoy ext_authz, as istiod builds it.

The provider comes from MeshConfig `extensionProviders` (envoyExtAuthzHttp or
envoyExtAuthzGrpc). The ext_authz filter runs only for requests a CUSTOM rule
matched: rbac.py emits those rules as RBAC *shadow* rules named
`istio-ext-authz-...`, whose match sets dynamic metadata
`istio_ext_authz_shadow_effective_policy_id`, and the ext_authz filter's
`filter_enabled_metadata` checks it (istiod's generateFilterMatcher)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
from envoy.extensions.filters.network.ext_authz.v3 import ext_authz_pb2 as net_ext_authz_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.type.matcher.v3 import metadata_pb2, string_pb2

from .. import naming

if TYPE_CHECKING:
    from ..context import PushContext

EXT_AUTHZ_HTTP_FILTER = "envoy.filters.http.ext_authz"
EXT_AUTHZ_NETWORK_FILTER = "envoy.filters.network.ext_authz"
HTTP_RBAC_FILTER = "envoy.filters.http.rbac"
NETWORK_RBAC_FILTER = "envoy.filters.network.rbac"
# istiod's authz model constants.
SHADOW_STAT_PREFIX = "istio_ext_authz_"
SHADOW_EFFECTIVE_POLICY_ID = "shadow_effective_policy_id"
POLICY_PREFIX = "istio-ext-authz"
DEFAULT_TIMEOUT_S = 600


class ExtAuthzError(ValueError):
    """The CUSTOM provider cannot be built; istiod then fails closed (DENY)."""


def find_provider(ctx: PushContext, name: str) -> Mapping[str, Any]:
    for p in ctx.state.mesh.extension_providers:
        if p.get("name") == name:
            return p
    known = ", ".join(sorted(str(p.get("name")) for p in ctx.state.mesh.extension_providers)) or "none"
    raise ExtAuthzError(f"extension provider {name!r} is not in meshConfig.extensionProviders (known: {known})")


def _service_cluster(ctx: PushContext, cfg: Mapping[str, Any], provider: str) -> tuple[str, str]:
    """(cluster, hostname) for `service` (`host` or `ns/host`) and `port`, istiod's
    lookupCluster: the service must be in the registry."""
    service = str(cfg.get("service") or "")
    port = cfg.get("port")
    if not service or not isinstance(port, int) or not 0 < port < 65536:
        raise ExtAuthzError(f"extension provider {provider!r}: service and a numeric port are required")
    ns, _, host = service.rpartition("/")
    candidates = [host]
    if "." not in host:
        candidates = [f"{host}.{ns or 'default'}.svc.{ctx.domain}"]
    for h in candidates:
        svc = ctx.state.services.get(h)
        if svc is not None and (not ns or svc.namespace == ns):
            if svc.port(port) is None:
                raise ExtAuthzError(f"extension provider {provider!r}: service {h} has no port {port}")
            return naming.outbound_cluster(port, svc.hostname), svc.hostname
    raise ExtAuthzError(f"extension provider {provider!r}: service {service!r} not found in the registry")


def _duration_s(value: Any, default: float) -> float:
    if value is None or value == "":
        return default
    text = str(value)
    try:
        if text.endswith("ms"):
            return float(text[:-2]) / 1000
        return float(text[:-1]) if text.endswith("s") else float(text)
    except ValueError:
        raise ExtAuthzError(f"timeout {text!r} is not a duration like '0.5s'") from None


def _set_duration(msg: Any, seconds: float) -> None:
    msg.seconds = int(seconds)
    msg.nanos = round((seconds - int(seconds)) * 1e9)


def header_matchers(names: Iterable[str]) -> string_pb2.ListStringMatcher | None:
    """istiod's generateHeaders: exact (case-insensitive), `*` as prefix/suffix wildcards."""
    out = string_pb2.ListStringMatcher()
    for n in names:
        m = out.patterns.add(ignore_case=True)
        if n == "*":
            m.safe_regex.regex = ".*"
            m.ClearField("ignore_case")
        elif n.startswith("*"):
            m.suffix = n[1:]
        elif n.endswith("*"):
            m.prefix = n[:-1]
        else:
            m.exact = n
    return out if out.patterns else None


def filter_enabled_metadata(rbac_filter: str) -> metadata_pb2.MetadataMatcher:
    m = metadata_pb2.MetadataMatcher(filter=rbac_filter)
    m.path.add(key=SHADOW_STAT_PREFIX + SHADOW_EFFECTIVE_POLICY_ID)
    m.value.string_match.prefix = POLICY_PREFIX
    return m


def _status(cfg: Mapping[str, Any], provider: str) -> int:
    raw = cfg.get("statusOnError")
    if raw in (None, ""):
        return 403
    try:
        code = int(str(raw))
    except ValueError:
        raise ExtAuthzError(f"extension provider {provider!r}: statusOnError {raw!r} is not a number") from None
    if not 100 <= code <= 599:
        raise ExtAuthzError(f"extension provider {provider!r}: statusOnError {code} is not an HTTP status")
    return code


def _body(cfg: Mapping[str, Any], out: ext_authz_pb2.ExtAuthz) -> None:
    body = cfg.get("includeRequestBodyInCheck")
    if isinstance(body, Mapping):
        out.with_request_body.max_request_bytes = int(body.get("maxRequestBytes") or 0)
        out.with_request_body.allow_partial_message = bool(body.get("allowPartialMessage", False))
        out.with_request_body.pack_as_bytes = bool(body.get("packAsBytes", False))


def http_filter(ctx: PushContext, provider_name: str) -> hcm.HttpFilter:
    """The ext_authz HTTP filter for a provider; raises ExtAuthzError if it cannot be built."""
    provider = find_provider(ctx, provider_name)
    out = ext_authz_pb2.ExtAuthz(transport_api_version=2)  # core.ApiVersion.V3
    out.filter_enabled_metadata.CopyFrom(filter_enabled_metadata(HTTP_RBAC_FILTER))
    if "envoyExtAuthzHttp" in provider:
        cfg = provider["envoyExtAuthzHttp"] or {}
        cluster, host = _service_cluster(ctx, cfg, provider_name)
        svc = out.http_service
        svc.server_uri.uri = f"http://{host}"
        svc.server_uri.cluster = cluster
        _set_duration(svc.server_uri.timeout, _duration_s(cfg.get("timeout"), DEFAULT_TIMEOUT_S))
        if cfg.get("pathPrefix"):
            svc.path_prefix = str(cfg["pathPrefix"])
        allowed = header_matchers(cfg.get("includeRequestHeadersInCheck") or cfg.get("includeHeadersInCheck") or [])
        if allowed is not None:
            out.allowed_headers.CopyFrom(allowed)
        extra = cfg.get("includeAdditionalHeadersInCheck") or {}
        for k in sorted(extra):
            svc.authorization_request.headers_to_add.add(key=str(k), value=str(extra[k]))
        response = [
            ("allowed_upstream_headers", "headersToUpstreamOnAllow"),
            ("allowed_client_headers", "headersToDownstreamOnDeny"),
            ("allowed_client_headers_on_success", "headersToDownstreamOnAllow"),
        ]
        for field_name, key in response:
            m = header_matchers(cfg.get(key) or [])
            if m is not None:
                getattr(svc.authorization_response, field_name).CopyFrom(m)
    elif "envoyExtAuthzGrpc" in provider:
        cfg = provider["envoyExtAuthzGrpc"] or {}
        cluster, host = _service_cluster(ctx, cfg, provider_name)
        out.grpc_service.envoy_grpc.cluster_name = cluster
        out.grpc_service.envoy_grpc.authority = host
        _set_duration(out.grpc_service.timeout, _duration_s(cfg.get("timeout"), DEFAULT_TIMEOUT_S))
    else:
        raise ExtAuthzError(f"extension provider {provider_name!r} is not envoyExtAuthzHttp or envoyExtAuthzGrpc")
    out.failure_mode_allow = bool(cfg.get("failOpen", False))
    out.status_on_error.code = _status(cfg, provider_name)
    _body(cfg, out)
    f = hcm.HttpFilter(name=EXT_AUTHZ_HTTP_FILTER)
    f.typed_config.Pack(out)
    return f


def network_filter(ctx: PushContext, provider_name: str) -> listener_components_pb2.Filter | None:
    """TCP workloads: only a gRPC provider works (istiod skips HTTP providers there)."""
    provider = find_provider(ctx, provider_name)
    if "envoyExtAuthzGrpc" not in provider:
        return None
    cfg = provider["envoyExtAuthzGrpc"] or {}
    cluster, host = _service_cluster(ctx, cfg, provider_name)
    out = net_ext_authz_pb2.ExtAuthz(stat_prefix="tcp.", transport_api_version=2)
    out.grpc_service.envoy_grpc.cluster_name = cluster
    out.grpc_service.envoy_grpc.authority = host
    _set_duration(out.grpc_service.timeout, _duration_s(cfg.get("timeout"), DEFAULT_TIMEOUT_S))
    out.failure_mode_allow = bool(cfg.get("failOpen", False))
    out.filter_enabled_metadata.CopyFrom(filter_enabled_metadata(NETWORK_RBAC_FILTER))
    f = listener_components_pb2.Filter(name=EXT_AUTHZ_NETWORK_FILTER)
    f.typed_config.Pack(out)
    return f
