"""Local rate limiting (Envoy's `envoy.filters.http.local_ratelimit`), the way
Istio's rate-limit task applies it: an EnvoyFilter inserts the filter before the
router (HTTP_FILTER INSERT_BEFORE) and gives it a token bucket, either for the
whole connection manager or per route / virtual host (typed_per_filter_config,
ROUTE_CONFIGURATION / VIRTUAL_HOST / HTTP_ROUTE MERGE).

Nothing here registers itself: istiod adds this filter only when an EnvoyFilter
says so. The EnvoyFilter translator calls `local_ratelimit_filter` /
`insert_before_router` for the HTTP_FILTER patch and `apply_to_route` /
`apply_to_virtual_host` for the MERGE patches (or `parse_local_ratelimit` to
turn the patch's `typed_config` YAML, TypedStruct or `@type` form, into the proto).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableSequence
from dataclasses import dataclass, field
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2 as lrl
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.type.v3 import percent_pb2
from google.protobuf import json_format

LOCAL_RATELIMIT_FILTER = "envoy.filters.http.local_ratelimit"
LOCAL_RATELIMIT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
TYPED_STRUCT_TYPES = ("type.googleapis.com/udpa.type.v1.TypedStruct", "type.googleapis.com/xds.type.v3.TypedStruct")
ROUTER_FILTER = "envoy.filters.http.router"
DEFAULT_STAT_PREFIX = "http_local_rate_limiter"


@dataclass(frozen=True, slots=True)
class TokenBucket:
    """`max_tokens` requests at once, refilled by `tokens_per_fill` (default:
    max_tokens) every `fill_interval_s` seconds."""

    max_tokens: int
    fill_interval_s: float = 60.0
    tokens_per_fill: int | None = None
    # Istio's task marks every rate-limited response with `x-local-rate-limit: true`.
    response_headers: Mapping[str, str] = field(default_factory=lambda: {"x-local-rate-limit": "true"})

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"token bucket max_tokens must be >= 1, got {self.max_tokens}")
        if self.fill_interval_s < 0.001:
            raise ValueError(f"token bucket fill interval must be >= 1ms, got {self.fill_interval_s}s")


def _all() -> base_pb2.RuntimeFractionalPercent:
    # Both filter_enabled and filter_enforced default to 0% in Envoy: set 100%.
    return base_pb2.RuntimeFractionalPercent(
        default_value=percent_pb2.FractionalPercent(numerator=100, denominator=percent_pb2.FractionalPercent.HUNDRED)
    )


def local_ratelimit_config(
    bucket: TokenBucket | None = None, *, stat_prefix: str = DEFAULT_STAT_PREFIX
) -> lrl.LocalRateLimit:
    """The filter's config. Without a bucket the filter only passes requests
    through, waiting for per-route buckets (the task's per-route variant)."""
    out = lrl.LocalRateLimit(stat_prefix=stat_prefix)
    if bucket is None:
        return out
    tb = out.token_bucket
    tb.max_tokens = bucket.max_tokens
    tb.tokens_per_fill.value = bucket.tokens_per_fill if bucket.tokens_per_fill is not None else bucket.max_tokens
    millis = round(bucket.fill_interval_s * 1000)
    tb.fill_interval.seconds, rest = divmod(millis, 1000)
    tb.fill_interval.nanos = rest * 1_000_000
    out.filter_enabled.CopyFrom(_all())
    out.filter_enabled.runtime_key = "local_rate_limit_enabled"
    out.filter_enforced.CopyFrom(_all())
    out.filter_enforced.runtime_key = "local_rate_limit_enforced"
    for k, v in sorted(bucket.response_headers.items()):
        out.response_headers_to_add.append(
            base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key=k, value=v),
                append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
            )
        )
    return out


def local_ratelimit_filter(
    bucket: TokenBucket | None = None, *, stat_prefix: str = DEFAULT_STAT_PREFIX
) -> hcm.HttpFilter:
    """The HTTP filter an EnvoyFilter HTTP_FILTER INSERT_BEFORE router adds."""
    f = hcm.HttpFilter(name=LOCAL_RATELIMIT_FILTER)
    f.typed_config.Pack(local_ratelimit_config(bucket, stat_prefix=stat_prefix))
    return f


def insert_before_router(filters: MutableSequence[hcm.HttpFilter], new: hcm.HttpFilter) -> None:
    """INSERT_BEFORE the router (or append if there is no router)."""
    for i, f in enumerate(filters):
        if f.name == ROUTER_FILTER:
            filters.insert(i, new)
            return
    filters.append(new)


def apply_to_route(route: rc.Route, bucket: TokenBucket, *, stat_prefix: str = DEFAULT_STAT_PREFIX) -> None:
    """Per-route bucket (HTTP_ROUTE MERGE of typed_per_filter_config)."""
    route.typed_per_filter_config[LOCAL_RATELIMIT_FILTER].Pack(local_ratelimit_config(bucket, stat_prefix=stat_prefix))


def apply_to_virtual_host(vhost: Any, bucket: TokenBucket, *, stat_prefix: str = DEFAULT_STAT_PREFIX) -> None:
    """Per-virtual-host bucket (VIRTUAL_HOST MERGE of typed_per_filter_config)."""
    vhost.typed_per_filter_config[LOCAL_RATELIMIT_FILTER].Pack(local_ratelimit_config(bucket, stat_prefix=stat_prefix))


def parse_local_ratelimit(typed_config: Mapping[str, Any]) -> lrl.LocalRateLimit:
    """An EnvoyFilter patch's `typed_config` (as in Istio's task: a TypedStruct
    with `type_url` + `value`, or the message itself with `@type`) -> proto.
    Raises ValueError naming the problem when it is not a LocalRateLimit."""
    kind = str(typed_config.get("@type", ""))
    if kind in TYPED_STRUCT_TYPES:
        inner_type = str(typed_config.get("type_url", ""))
        if inner_type != LOCAL_RATELIMIT_TYPE:
            raise ValueError(f"typed_config TypedStruct type_url is {inner_type!r}, want {LOCAL_RATELIMIT_TYPE}")
        value = dict(typed_config.get("value") or {})
    elif kind == LOCAL_RATELIMIT_TYPE:
        value = {k: v for k, v in typed_config.items() if k != "@type"}
    else:
        raise ValueError(f"typed_config @type is {kind!r}, want {LOCAL_RATELIMIT_TYPE} or a TypedStruct")
    try:
        return json_format.ParseDict(value, lrl.LocalRateLimit())
    except json_format.ParseError as e:
        raise ValueError(f"local rate limit config: {e}") from None
