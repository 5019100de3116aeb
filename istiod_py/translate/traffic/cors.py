"""VirtualService `corsPolicy`: Envoy's CORS filter, configured per route.

As istiod does, every HTTP connection manager carries an empty
`envoy.filters.http.cors` filter; a route with a `corsPolicy` gets a CorsPolicy
in its typed_per_filter_config."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.type.matcher.v3 import string_pb2
from envoy.type.v3 import percent_pb2

from ..features import RouteInput, http_filter_feature, route_feature
from ..route.httproute import string_matcher
from .fault import FAULT_FILTER

if TYPE_CHECKING:
    from istiod_py.model import Proxy

    from ..context import PushContext

CORS_FILTER = "envoy.filters.http.cors"

_IGNORE = 2  # CorsPolicy.UnmatchedPreflights.IGNORE

# istiod's chain order: fault, then cors. Importing .fault above registers the
# fault filter first, whatever order plugins.py imports the two in.
FILTER_ORDER = (FAULT_FILTER, CORS_FILTER)


def translate_cors(policy: Any) -> cors_pb2.CorsPolicy:
    """Istio CorsPolicy -> Envoy CorsPolicy, field for field as istiod (1.23+) builds it."""
    out = cors_pb2.CorsPolicy()
    # Envoy (1.30+) answers unmatched preflights itself unless told to forward them;
    # Istio forwards them (the pre-1.30 behaviour) unless unmatchedPreflights: IGNORE.
    out.forward_not_matching_preflights.value = int(policy.unmatched_preflights) != _IGNORE
    if len(policy.allow_origins):
        out.allow_origin_string_match.extend(string_matcher(sm) for sm in policy.allow_origins)
    elif len(policy.allow_origin):
        out.allow_origin_string_match.extend(string_pb2.StringMatcher(exact=o) for o in policy.allow_origin)
    out.filter_enabled.default_value.CopyFrom(
        percent_pb2.FractionalPercent(numerator=100, denominator=percent_pb2.FractionalPercent.HUNDRED)
    )
    if policy.HasField("allow_credentials"):
        out.allow_credentials.CopyFrom(policy.allow_credentials)
    if policy.allow_headers:
        out.allow_headers = ",".join(policy.allow_headers)
    if policy.allow_methods:
        out.allow_methods = ",".join(policy.allow_methods)
    if policy.expose_headers:
        out.expose_headers = ",".join(policy.expose_headers)
    if policy.HasField("max_age"):
        out.max_age = str(policy.max_age.seconds)
    return out


@route_feature
def cors(inp: RouteInput, route: rc.Route) -> None:
    http = inp.http
    if http is None or not http.HasField("cors_policy"):
        return
    route.typed_per_filter_config[CORS_FILTER].Pack(translate_cors(http.cors_policy))


def cors_filter() -> hcm.HttpFilter:
    f = hcm.HttpFilter(name=CORS_FILTER)
    f.typed_config.Pack(cors_pb2.Cors())
    return f


@http_filter_feature
def cors_http_filter(ctx: PushContext, proxy: Proxy, direction: str, port: int) -> list[hcm.HttpFilter]:
    # Always present, as in istiod: per-route CorsPolicy needs the filter in the chain.
    return [cors_filter()]
