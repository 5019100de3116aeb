"""VirtualService HTTP features as istiod builds them: translate a small mesh and
assert on the Envoy route and listener protos (fault, cors, mirror, retries,
timeouts, headers, rewrite, redirect, direct response, local rate limit)."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.type.v3 import percent_pb2

from istiod_py.model import MeshState, Proxy, parse_proxy
from istiod_py.translate.generate import Translator
from istiod_py.translate.traffic import local_ratelimit
from istiod_py.xds.types import TypeUrl
from tests.support.states import mesh_state

BASE = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: default}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: default}
spec: {address: 127.9.0.1, labels: {app: reviews, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v2, namespace: default}
spec: {address: 127.9.0.2, labels: {app: reviews, version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""

MILLION = percent_pb2.FractionalPercent.MILLION
HUNDRED = percent_pb2.FractionalPercent.HUNDRED


def state_of(*docs: str) -> MeshState:
    return mesh_state(BASE, *docs)


def client() -> Proxy:
    return parse_proxy(
        "sidecar~127.9.1.1~client.default~default.svc.cluster.local",
        {"NAMESPACE": "default", "LABELS": {"app": "client"}, "INTERCEPTION_MODE": "NONE"},
    )


def route_config(*docs: str) -> route_pb2.RouteConfiguration:
    out = Translator().generate(state_of(*docs), client(), TypeUrl.ROUTE)
    built = out.get("9080")
    assert built is not None
    msg = route_pb2.RouteConfiguration()
    msg.ParseFromString(built.body)
    return msg


def routes_of(*docs: str, host: str = "reviews.default.svc.cluster.local:9080") -> list[rc.Route]:
    for vh in route_config(*docs).virtual_hosts:
        if vh.name == host:
            return list(vh.routes)
    raise AssertionError(f"no virtual host {host}")


def vs(http: str, name: str = "reviews", hosts: str = "[reviews]") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: {hosts}
  http:
{http}
"""


def unpack(route: rc.Route, name: str, msg: Any) -> Any:
    assert name in route.typed_per_filter_config, dict(route.typed_per_filter_config)
    assert route.typed_per_filter_config[name].Unpack(msg)
    return msg


# --- fault -------------------------------------------------------------------------------------


def test_fault_delay_and_abort_per_route() -> None:
    (r,) = routes_of(
        vs("""
  - fault:
      delay: {fixedDelay: 1.5s, percentage: {value: 50}}
      abort: {httpStatus: 555, percentage: {value: 0.1}}
    route: [{destination: {host: reviews, subset: v1}}]
""")
    )
    f = unpack(r, "envoy.filters.http.fault", fault_pb2.HTTPFault())
    assert f.delay.fixed_delay.seconds == 1 and f.delay.fixed_delay.nanos == 500_000_000
    assert (f.delay.percentage.numerator, f.delay.percentage.denominator) == (500_000, MILLION)
    assert f.abort.http_status == 555
    assert (f.abort.percentage.numerator, f.abort.percentage.denominator) == (1000, MILLION)


def test_fault_grpc_abort_and_deprecated_percent() -> None:
    (r,) = routes_of(
        vs("""
  - fault:
      delay: {fixedDelay: 2s, percent: 30}
      abort: {grpcStatus: UNAVAILABLE}
    route: [{destination: {host: reviews}}]
""")
    )
    f = unpack(r, "envoy.filters.http.fault", fault_pb2.HTTPFault())
    assert (f.delay.percentage.numerator, f.delay.percentage.denominator) == (30, HUNDRED)
    assert f.abort.grpc_status == 14
    assert not f.abort.HasField("percentage")  # unset: Envoy aborts nothing, as Istio documents


def test_no_fault_no_per_filter_config() -> None:
    (r,) = routes_of(vs("  - route: [{destination: {host: reviews}}]"))
    assert "envoy.filters.http.fault" not in r.typed_per_filter_config
    assert "envoy.filters.http.cors" not in r.typed_per_filter_config


def test_fault_and_cors_filters_in_every_http_connection_manager() -> None:
    out = Translator().generate(state_of(), client(), TypeUrl.LISTENER)
    lst = listener_pb2.Listener()
    built = out.get("127.0.0.1_9080")
    assert built is not None
    lst.ParseFromString(built.body)
    m = hcm.HttpConnectionManager()
    assert lst.filter_chains[0].filters[0].typed_config.Unpack(m)
    names = [f.name for f in m.http_filters]
    assert names.index("envoy.filters.http.fault") < names.index("envoy.filters.http.cors")
    assert names[-1] == "envoy.filters.http.router"


# --- cors --------------------------------------------------------------------------------------


def test_cors_policy() -> None:
    (r,) = routes_of(
        vs("""
  - corsPolicy:
      allowOrigins: [{exact: "https://a.example"}, {prefix: "https://b."}, {regex: ".*\\\\.c\\\\.example"}]
      allowMethods: [GET, POST]
      allowHeaders: [x-a, x-b]
      exposeHeaders: [x-e]
      maxAge: 24h
      allowCredentials: true
    route: [{destination: {host: reviews}}]
""")
    )
    c = unpack(r, "envoy.filters.http.cors", cors_pb2.CorsPolicy())
    kinds = [m.WhichOneof("match_pattern") for m in c.allow_origin_string_match]
    assert kinds == ["exact", "prefix", "safe_regex"]
    assert c.allow_origin_string_match[0].exact == "https://a.example"
    assert c.allow_methods == "GET,POST"
    assert c.allow_headers == "x-a,x-b"
    assert c.expose_headers == "x-e"
    assert c.max_age == "86400"
    assert c.allow_credentials.value is True
    assert c.forward_not_matching_preflights.value is True
    assert c.filter_enabled.default_value.numerator == 100


def test_cors_unmatched_preflights_ignore_and_deprecated_allow_origin() -> None:
    (r,) = routes_of(
        vs("""
  - corsPolicy:
      allowOrigin: ["https://old.example"]
      unmatchedPreflights: IGNORE
    route: [{destination: {host: reviews}}]
""")
    )
    c = unpack(r, "envoy.filters.http.cors", cors_pb2.CorsPolicy())
    assert [m.exact for m in c.allow_origin_string_match] == ["https://old.example"]
    assert c.forward_not_matching_preflights.value is False
    assert not c.HasField("allow_credentials")


# --- mirror ------------------------------------------------------------------------------------


def test_mirror_with_percentage_and_mirrors() -> None:
    (r,) = routes_of(
        vs("""
  - route: [{destination: {host: reviews, subset: v1}}]
    mirror: {host: reviews, subset: v2}
    mirrorPercentage: {value: 25.5}
    mirrors:
    - destination: {host: ratings}
    - destination: {host: ratings.default.svc.cluster.local, port: {number: 9080}}
      percentage: {value: 5}
    - destination: {host: ratings}
      percentage: {value: 0}
""")
    )
    pols = r.route.request_mirror_policies
    assert [p.cluster for p in pols] == [
        "outbound|9080|v2|reviews.default.svc.cluster.local",
        "outbound|9080||ratings.default.svc.cluster.local",
        "outbound|9080||ratings.default.svc.cluster.local",
    ]
    assert (pols[0].runtime_fraction.default_value.numerator, pols[0].runtime_fraction.default_value.denominator) == (
        255_000,
        MILLION,
    )
    assert (pols[1].runtime_fraction.default_value.numerator, pols[1].runtime_fraction.default_value.denominator) == (
        100,
        HUNDRED,
    )
    assert pols[2].runtime_fraction.default_value.numerator == 50_000
    assert all(p.trace_sampled.value is False and p.HasField("trace_sampled") for p in pols)


def test_mirror_zero_percent_is_off() -> None:
    (r,) = routes_of(
        vs("""
  - route: [{destination: {host: reviews}}]
    mirror: {host: ratings}
    mirrorPercentage: {value: 0}
""")
    )
    assert len(r.route.request_mirror_policies) == 0


# --- retries and timeouts ------------------------------------------------------------------------


def test_default_retry_policy() -> None:
    (r,) = routes_of(vs("  - route: [{destination: {host: reviews}}]"))
    p = r.route.retry_policy
    assert p.num_retries.value == 2
    assert p.retry_on == "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
    assert list(p.retriable_status_codes) == []  # as istiod: a 503 is not retried by default
    assert [h.name for h in p.retry_host_predicate] == ["envoy.retry_host_predicates.previous_hosts"]
    assert p.host_selection_retry_max_attempts == 5


def test_retries_from_virtual_service() -> None:
    (r,) = routes_of(
        vs("""
  - route: [{destination: {host: reviews}}]
    retries:
      attempts: 3
      perTryTimeout: 0.25s
      retryOn: gateway-error,connect-failure,503,429
      retryIgnorePreviousHosts: false
      backoff: 0.05s
""")
    )
    p = r.route.retry_policy
    assert p.num_retries.value == 3
    assert p.retry_on == "gateway-error,connect-failure,retriable-status-codes"
    assert list(p.retriable_status_codes) == [503, 429]
    assert p.per_try_timeout.nanos == 250_000_000
    assert len(p.retry_host_predicate) == 0
    assert p.retry_back_off.base_interval.nanos == 50_000_000


def test_zero_attempts_disable_retries() -> None:
    (r,) = routes_of(vs("  - route: [{destination: {host: reviews}}]\n    retries: {attempts: 0}"))
    assert not r.route.HasField("retry_policy")


def test_timeout_and_grpc_cap() -> None:
    r1, r2 = routes_of(
        vs("""
  - match: [{uri: {prefix: /slow}}]
    timeout: 0.5s
    route: [{destination: {host: reviews}}]
  - route: [{destination: {host: reviews}}]
""")
    )
    assert r1.route.timeout.nanos == 500_000_000
    assert r1.route.max_grpc_timeout.nanos == 500_000_000
    # A max_stream_duration would make Envoy ignore the route timeout.
    assert not r1.route.HasField("max_stream_duration")
    assert r2.route.timeout.seconds == 0 and r2.route.timeout.nanos == 0
    assert r2.route.HasField("max_grpc_timeout") and r2.route.max_grpc_timeout.seconds == 0


# --- match, weights, headers, rewrite, redirect, direct response ------------------------------------


def test_match_order_and_weights() -> None:
    routes = routes_of(
        vs("""
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{uri: {exact: /exact}}, {uri: {regex: "/re/[0-9]+"}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 80}
    - {destination: {host: reviews, subset: v2}, weight: 20}
""")
    )
    assert len(routes) == 4
    assert routes[0].match.headers[0].name == "end-user"
    assert routes[0].match.headers[0].string_match.exact == "jason"
    assert routes[1].match.path == "/exact"
    assert routes[2].match.safe_regex.regex == "/re/[0-9]+"
    wc = routes[3].route.weighted_clusters.clusters
    assert [(c.name, c.weight.value) for c in wc] == [
        ("outbound|9080|v1|reviews.default.svc.cluster.local", 80),
        ("outbound|9080|v2|reviews.default.svc.cluster.local", 20),
    ]


def test_header_operations_and_authority() -> None:
    (r,) = routes_of(
        vs("""
  - headers:
      request:
        set: {x-set: a, host: new.example}
        add: {x-add: b}
        remove: [x-gone, ":authority"]
      response:
        set: {x-resp: c}
        remove: [x-echo-server]
    route:
    - destination: {host: reviews}
      headers:
        request: {set: {x-dest: d}}
""")
    )
    req = {h.header.key: h for h in r.request_headers_to_add}
    assert set(req) == {"x-set", "x-add", "x-dest"}  # Host never as a header: Envoy rejects it
    assert req["x-set"].append_action == base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
    assert req["x-add"].append_action == base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
    assert list(r.request_headers_to_remove) == ["x-gone"]
    assert [h.header.key for h in r.response_headers_to_add] == ["x-resp"]
    assert list(r.response_headers_to_remove) == ["x-echo-server"]
    assert r.route.host_rewrite_literal == "new.example"


def test_rewrite_redirect_direct_response() -> None:
    r1, r2, r3, r4 = routes_of(
        vs("""
  - match: [{uri: {prefix: /old}}]
    rewrite: {uri: /new, authority: rewritten.example}
    route: [{destination: {host: reviews}}]
  - match: [{uri: {prefix: /moved}}]
    redirect: {uri: /there, authority: other.example, redirectCode: 308}
  - match: [{uri: {prefix: /derive}}]
    redirect: {uri: /x, derivePort: FROM_REQUEST_PORT}
  - directResponse: {status: 418, body: {string: teapot}}
""")
    )
    assert r1.route.prefix_rewrite == "/new" and r1.route.host_rewrite_literal == "rewritten.example"
    assert r2.redirect.path_redirect == "/there" and r2.redirect.host_redirect == "other.example"
    assert r2.redirect.response_code == rc.RedirectAction.PERMANENT_REDIRECT
    assert r3.redirect.port_redirect == 9080
    assert r4.direct_response.status == 418 and r4.direct_response.body.inline_string == "teapot"
    for r in (r2, r3, r4):  # no route action: no retry, timeout, mirror or fault
        assert not r.HasField("route")


# --- local rate limit (the EnvoyFilter building blocks) ----------------------------------------------


def test_local_ratelimit_filter_and_per_route_bucket() -> None:
    bucket = local_ratelimit.TokenBucket(max_tokens=4, fill_interval_s=60)
    f = local_ratelimit.local_ratelimit_filter(bucket)
    cfg = local_rate_limit_pb2.LocalRateLimit()
    assert f.name == "envoy.filters.http.local_ratelimit" and f.typed_config.Unpack(cfg)
    assert cfg.token_bucket.max_tokens == 4 and cfg.token_bucket.tokens_per_fill.value == 4
    assert cfg.token_bucket.fill_interval.seconds == 60
    assert cfg.filter_enabled.default_value.numerator == 100
    assert cfg.filter_enforced.default_value.numerator == 100
    filters = [hcm.HttpFilter(name="envoy.filters.http.fault"), hcm.HttpFilter(name="envoy.filters.http.router")]
    local_ratelimit.insert_before_router(filters, local_ratelimit.local_ratelimit_filter())
    assert [x.name for x in filters][1:] == ["envoy.filters.http.local_ratelimit", "envoy.filters.http.router"]
    route = rc.Route()
    local_ratelimit.apply_to_route(route, bucket)
    assert "envoy.filters.http.local_ratelimit" in route.typed_per_filter_config


def test_local_ratelimit_parses_istio_task_typed_struct() -> None:
    value = {
        "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
        "type_url": local_ratelimit.LOCAL_RATELIMIT_TYPE,
        "value": {
            "stat_prefix": "http_local_rate_limiter",
            "token_bucket": {"max_tokens": 10, "tokens_per_fill": 10, "fill_interval": "60s"},
            "filter_enabled": {"runtime_key": "e", "default_value": {"numerator": 100, "denominator": "HUNDRED"}},
        },
    }
    cfg = local_ratelimit.parse_local_ratelimit(value)
    assert cfg.token_bucket.max_tokens == 10 and cfg.token_bucket.fill_interval.seconds == 60
    with pytest.raises(ValueError, match="type_url"):
        local_ratelimit.parse_local_ratelimit({**value, "type_url": "type.googleapis.com/x.Y"})
