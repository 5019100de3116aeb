"""EnvoyFilter configPatches on translated resources: one test per applyTo and
operation, plus selection (namespace, workloadSelector, priority, context),
TypedStruct conversion, rejection of bad patches and sharing of patched output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm

from istiod_py.cache.resources import Resources
from istiod_py.model import MeshState, Proxy, parse_proxy
from istiod_py.translate import envoyfilter
from istiod_py.translate.generate import Translator
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
metadata: {name: ratings-v1, namespace: default}
spec: {address: 127.9.0.3, labels: {app: ratings, version: v1}}
"""

OUT_LISTENER = "127.0.0.1_9080"
IN_LISTENER = "127.9.0.1_9080"
REVIEWS = "outbound|9080||reviews.default.svc.cluster.local"
RATINGS = "outbound|9080||ratings.default.svc.cluster.local"
REVIEWS_VH = "reviews.default.svc.cluster.local:9080"

RATE_LIMIT = """
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: filter-local-ratelimit-svc, namespace: istio-system}
spec:
  workloadSelector: {labels: {app: reviews}}
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_INBOUND
      listener:
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.local_ratelimit
        typed_config:
          "@type": type.googleapis.com/udpa.type.v1.TypedStruct
          type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
          value:
            stat_prefix: http_local_rate_limiter
            token_bucket: {max_tokens: 4, tokens_per_fill: 4, fill_interval: 60s}
            filter_enabled:
              runtime_key: local_rate_limit_enabled
              default_value: {numerator: 100, denominator: HUNDRED}
            filter_enforced:
              runtime_key: local_rate_limit_enforced
              default_value: {numerator: 100, denominator: HUNDRED}
            response_headers_to_add:
            - append_action: APPEND_IF_EXISTS_OR_ADD
              header: {key: x-local-rate-limit, value: "true"}
"""


def ef(name: str, patches: str, *, namespace: str = "default", extra: str = "") -> str:
    return f"""
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {{name: {name}, namespace: {namespace}}}
spec:
{extra}
  configPatches:
{patches}
"""


def state_of(*docs: str) -> MeshState:
    return mesh_state(BASE, *docs)


def sidecar(ip: str, name: str, labels: dict[str, str], namespace: str = "default") -> Proxy:
    return parse_proxy(
        f"sidecar~{ip}~{name}.{namespace}~{namespace}.svc.cluster.local",
        {"NAMESPACE": namespace, "LABELS": labels, "INTERCEPTION_MODE": "NONE"},
    )


CLIENT = sidecar("127.9.1.1", "client", {"app": "client"})
REVIEWS_PROXY = sidecar("127.9.0.1", "reviews-v1", {"app": "reviews", "version": "v1"})


class Out:
    def __init__(self, *docs: str, proxy: Proxy = CLIENT) -> None:
        self.translator = Translator()
        self.state = state_of(*docs)
        self.proxy = proxy

    def res(self, type_url: str, proxy: Proxy | None = None) -> Resources:
        return self.translator.generate(self.state, proxy or self.proxy, type_url)

    def msg(self, type_url: str, name: str, proxy: Proxy | None = None) -> Any:
        b = self.res(type_url, proxy).get(name)
        assert b is not None, f"{name} not in {sorted(self.res(type_url, proxy).index)}"
        return b.message()

    def hcm(self, listener: str, proxy: Proxy | None = None) -> hcm.HttpConnectionManager:
        lst: listener_pb2.Listener = self.msg(TypeUrl.LISTENER, listener, proxy)
        for fc in lst.filter_chains:
            for f in fc.filters:
                if f.name == envoyfilter.HCM:
                    m = hcm.HttpConnectionManager()
                    f.typed_config.Unpack(m)
                    return m
        raise AssertionError("no HCM")

    def http_filters(self, listener: str, proxy: Proxy | None = None) -> list[str]:
        return [f.name for f in self.hcm(listener, proxy).http_filters]

    @property
    def errors(self) -> list[str]:
        return envoyfilter.translation_errors(self.translator.context(self.state))


# --- HTTP_FILTER ---------------------------------------------------------------------------------


def test_rate_limit_task_typed_struct_insert_before_router_inbound_only() -> None:
    out = Out(RATE_LIMIT, proxy=REVIEWS_PROXY)
    names = out.http_filters(IN_LISTENER)
    # No subFilter in the task's match: INSERT_BEFORE puts it first (as istiod does).
    assert names[0] == "envoy.filters.http.local_ratelimit" and names[-1] == "envoy.filters.http.router"
    f = out.hcm(IN_LISTENER).http_filters[0]
    # TypedStruct became the real type (Envoy takes TypedStruct only for some extensions).
    assert f.typed_config.type_url.endswith("local_ratelimit.v3.LocalRateLimit")
    cfg = local_rate_limit_pb2.LocalRateLimit()
    f.typed_config.Unpack(cfg)
    assert cfg.token_bucket.max_tokens == 4 and cfg.token_bucket.fill_interval.seconds == 60
    assert cfg.filter_enforced.default_value.numerator == 100
    # SIDECAR_INBOUND: the outbound listener is untouched; the client is not selected.
    assert "envoy.filters.http.local_ratelimit" not in out.http_filters(OUT_LISTENER)
    assert "envoy.filters.http.local_ratelimit" not in out.http_filters(OUT_LISTENER, CLIENT)
    assert out.errors == []


LUA_VALUE = """
        name: envoy.filters.http.lua
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
          default_source_code: {inline_string: "function envoy_on_response(h) h:headers():add('x-lua', 'yes') end"}
"""


def _http_filter_patch(op: str, sub: str = "envoy.filters.http.router", value: str = LUA_VALUE) -> str:
    return f"""
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_OUTBOUND
      listener:
        portNumber: 9080
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter: {{name: {sub}}}
    patch:
      operation: {op}
      value: {value if op != "REMOVE" else "{}"}
"""


def test_http_filter_insert_first_after_replace_remove() -> None:
    out = Out(ef("first", _http_filter_patch("INSERT_FIRST")))
    assert out.http_filters(OUT_LISTENER)[0] == "envoy.filters.http.lua"
    base = Out().http_filters(OUT_LISTENER)
    assert len(base) >= 1
    if len(base) >= 2:  # INSERT_AFTER the first filter (when there is more than the router)
        out = Out(ef("after", _http_filter_patch("INSERT_AFTER", base[0])))
        assert out.http_filters(OUT_LISTENER)[1] == "envoy.filters.http.lua"
    two = (
        ef("a", _http_filter_patch("INSERT_BEFORE"))
        + "---"
        + ef(
            "b",
            _http_filter_patch(
                "REPLACE",
                "envoy.filters.http.lua",
                LUA_VALUE.replace("'yes'", "'replaced'"),
            ),
        )
    )
    out = Out(two)
    lua = [f for f in out.hcm(OUT_LISTENER).http_filters if f.name == "envoy.filters.http.lua"]
    assert len(lua) == 1 and b"replaced" in lua[0].typed_config.value
    out = Out(
        ef("a", _http_filter_patch("INSERT_BEFORE"))
        + "---"
        + ef("b", _http_filter_patch("REMOVE", "envoy.filters.http.lua"))
    )
    assert "envoy.filters.http.lua" not in out.http_filters(OUT_LISTENER)
    assert out.errors == []


def test_http_filter_merge_typed_config_merges_fields() -> None:
    merge = (
        _http_filter_patch(
            "MERGE",
            "envoy.filters.http.local_ratelimit",
            """
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
          token_bucket: {max_tokens: 9, fill_interval: 60s}
""",
        )
        .replace("SIDECAR_OUTBOUND", "SIDECAR_INBOUND")
        .replace("portNumber: 9080", "name: " + IN_LISTENER)
    )
    out = Out(RATE_LIMIT, ef("merge", merge, namespace="istio-system"), proxy=REVIEWS_PROXY)
    f = next(f for f in out.hcm(IN_LISTENER).http_filters if f.name == "envoy.filters.http.local_ratelimit")
    cfg = local_rate_limit_pb2.LocalRateLimit()
    f.typed_config.Unpack(cfg)
    assert cfg.token_bucket.max_tokens == 9
    assert cfg.stat_prefix == "http_local_rate_limiter"  # kept: merged, not replaced
    assert out.errors == []


# --- NETWORK_FILTER / FILTER_CHAIN / LISTENER / LISTENER_FILTER --------------------------------------

NET_RL = """
        name: envoy.filters.network.local_ratelimit
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit
          stat_prefix: net_rl
          token_bucket: {max_tokens: 100, fill_interval: 1s}
"""


def test_network_filter_insert_before_hcm_and_remove() -> None:
    patch = f"""
  - applyTo: NETWORK_FILTER
    match:
      listener:
        name: {OUT_LISTENER}
        filterChain: {{filter: {{name: envoy.filters.network.http_connection_manager}}}}
    patch:
      operation: INSERT_BEFORE
      value:{NET_RL}"""
    out = Out(ef("net", patch))
    lst = out.msg(TypeUrl.LISTENER, OUT_LISTENER)
    assert [f.name for f in lst.filter_chains[0].filters] == ["envoy.filters.network.local_ratelimit", envoyfilter.HCM]
    remove = f"""
  - applyTo: NETWORK_FILTER
    match:
      listener:
        name: {OUT_LISTENER}
        filterChain: {{filter: {{name: envoy.filters.network.local_ratelimit}}}}
    patch: {{operation: REMOVE}}
"""
    out = Out(ef("net", patch), ef("rm", remove, namespace="istio-system", extra="  priority: 10"))
    lst = out.msg(TypeUrl.LISTENER, OUT_LISTENER)
    assert [f.name for f in lst.filter_chains[0].filters] == [envoyfilter.HCM]
    assert out.errors == []


def test_filter_chain_merge_and_listener_merge_remove_add() -> None:
    patches = f"""
  - applyTo: FILTER_CHAIN
    match: {{listener: {{name: {OUT_LISTENER}}}}}
    patch: {{operation: MERGE, value: {{name: patched-chain}}}}
  - applyTo: LISTENER
    match: {{listener: {{portNumber: 9080}}, context: SIDECAR_OUTBOUND}}
    patch: {{operation: MERGE, value: {{per_connection_buffer_limit_bytes: 12345}}}}
  - applyTo: LISTENER
    match: {{context: SIDECAR_OUTBOUND}}
    patch:
      operation: ADD
      value:
        name: extra
        address: {{socket_address: {{address: 127.0.0.1, port_value: 9999}}}}
        filter_chains:
        - filters:
          - name: envoy.filters.network.tcp_proxy
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
              stat_prefix: extra
              cluster: {RATINGS}
"""
    out = Out(ef("l", patches))
    lst = out.msg(TypeUrl.LISTENER, OUT_LISTENER)
    assert lst.filter_chains[0].name == "patched-chain"
    assert lst.per_connection_buffer_limit_bytes.value == 12345
    assert "extra" in out.res(TypeUrl.LISTENER)
    assert out.errors == []
    removed = Out(
        ef(
            "r",
            f"""
  - applyTo: LISTENER
    match: {{listener: {{name: {OUT_LISTENER}}}}}
    patch: {{operation: REMOVE}}
""",
        )
    )
    assert OUT_LISTENER not in removed.res(TypeUrl.LISTENER)


def test_listener_filter_insert_first() -> None:
    patch = f"""
  - applyTo: LISTENER_FILTER
    match: {{listener: {{name: {OUT_LISTENER}}}}}
    patch:
      operation: INSERT_FIRST
      value:
        name: envoy.filters.listener.tls_inspector
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector
"""
    out = Out(ef("lf", patch))
    lst = out.msg(TypeUrl.LISTENER, OUT_LISTENER)
    assert lst.listener_filters[0].name == "envoy.filters.listener.tls_inspector"


# --- ROUTE_CONFIGURATION / VIRTUAL_HOST / HTTP_ROUTE -----------------------------------------------


def test_route_configuration_merge_and_vhost_ops() -> None:
    patches = f"""
  - applyTo: ROUTE_CONFIGURATION
    match: {{routeConfiguration: {{portNumber: 9080}}}}
    patch:
      operation: MERGE
      value: {{response_headers_to_add: [{{header: {{key: x-rc, value: "1"}}}}]}}
  - applyTo: VIRTUAL_HOST
    match: {{routeConfiguration: {{vhost: {{name: {REVIEWS_VH}}}}}}}
    patch: {{operation: MERGE, value: {{request_headers_to_add: [{{header: {{key: x-vh, value: "1"}}}}]}}}}
  - applyTo: VIRTUAL_HOST
    match: {{routeConfiguration: {{portNumber: 9080}}}}
    patch:
      operation: ADD
      value:
        name: added
        domains: [added.example]
        routes: [{{match: {{prefix: /}}, direct_response: {{status: 204}}}}]
  - applyTo: VIRTUAL_HOST
    match: {{routeConfiguration: {{vhost: {{domain_name: ratings}}}}}}
    patch: {{operation: REMOVE}}
"""
    out = Out(ef("rc", patches))
    rcfg: route_pb2.RouteConfiguration = out.msg(TypeUrl.ROUTE, "9080")
    assert rcfg.response_headers_to_add[0].header.key == "x-rc"
    vhosts = {vh.name: vh for vh in rcfg.virtual_hosts}
    assert vhosts[REVIEWS_VH].request_headers_to_add[0].header.key == "x-vh"
    assert "added" in vhosts
    assert "ratings.default.svc.cluster.local:9080" not in vhosts
    assert out.errors == []


def test_http_route_merge_insert_first_and_inbound_inline_routes() -> None:
    patches = f"""
  - applyTo: HTTP_ROUTE
    match: {{routeConfiguration: {{vhost: {{name: {REVIEWS_VH}, route: {{name: default}}}}}}}}
    patch:
      operation: MERGE
      value:
        typed_per_filter_config:
          envoy.filters.http.local_ratelimit:
            "@type": type.googleapis.com/udpa.type.v1.TypedStruct
            type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
            value:
              stat_prefix: per_route
              token_bucket: {{max_tokens: 2, fill_interval: 60s}}
  - applyTo: HTTP_ROUTE
    match: {{routeConfiguration: {{vhost: {{name: {REVIEWS_VH}}}}}}}
    patch:
      operation: INSERT_FIRST
      value: {{name: health, match: {{path: /healthz}}, direct_response: {{status: 200}}}}
  - applyTo: HTTP_ROUTE
    match: {{context: SIDECAR_INBOUND, routeConfiguration: {{portNumber: 9080}}}}
    patch: {{operation: MERGE, value: {{decorator: {{operation: patched-inbound}}}}}}
"""
    out = Out(ef("routes", patches), proxy=REVIEWS_PROXY)
    rcfg: route_pb2.RouteConfiguration = out.msg(TypeUrl.ROUTE, "9080")
    vh = next(v for v in rcfg.virtual_hosts if v.name == REVIEWS_VH)
    assert [r.name for r in vh.routes] == ["health", "default"]
    any_cfg = vh.routes[1].typed_per_filter_config["envoy.filters.http.local_ratelimit"]
    assert any_cfg.type_url.endswith("LocalRateLimit")
    other = next(v for v in rcfg.virtual_hosts if v.name != REVIEWS_VH and v.routes)
    assert "envoy.filters.http.local_ratelimit" not in other.routes[0].typed_per_filter_config
    # SIDECAR_INBOUND route patch reaches the inbound listener's inline route config only.
    inbound = out.hcm(IN_LISTENER).route_config
    assert inbound.virtual_hosts[0].routes[0].decorator.operation == "patched-inbound"
    assert all(r.decorator.operation != "patched-inbound" for v in rcfg.virtual_hosts for r in v.routes)
    assert out.errors == []


# --- CLUSTER ----------------------------------------------------------------------------------------


def test_cluster_merge_remove_add_replace_and_sharing() -> None:
    patches = """
  - applyTo: CLUSTER
    match: {cluster: {service: reviews.default.svc.cluster.local, portNumber: 9080}}
    patch: {operation: MERGE, value: {connect_timeout: 7s}}
  - applyTo: CLUSTER
    match: {cluster: {name: BlackHoleCluster}}
    patch: {operation: REMOVE}
  - applyTo: CLUSTER
    match: {context: SIDECAR_OUTBOUND}
    patch:
      operation: ADD
      value:
        name: added-static
        type: STATIC
        connect_timeout: 1s
        load_assignment:
          cluster_name: added-static
          endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}]}]
  - applyTo: CLUSTER
    match: {cluster: {name: PassthroughCluster}}
    patch:
      operation: REPLACE
      value: {name: PassthroughCluster, type: ORIGINAL_DST, lb_policy: CLUSTER_PROVIDED, connect_timeout: 3s}
"""
    base = Out()
    out = Out(ef("c", patches))
    res = out.res(TypeUrl.CLUSTER)
    c: cluster_pb2.Cluster = out.msg(TypeUrl.CLUSTER, REVIEWS)
    assert c.connect_timeout.seconds == 7
    assert out.msg(TypeUrl.CLUSTER, RATINGS).connect_timeout.seconds != 7
    assert "BlackHoleCluster" not in res and "added-static" in res
    assert out.msg(TypeUrl.CLUSTER, "PassthroughCluster").connect_timeout.seconds == 3
    assert out.errors == []
    # Unpatched resources keep their bytes; a second proxy with the same filters
    # gets the very same patched objects.
    assert res.get(RATINGS).body == base.res(TypeUrl.CLUSTER).get(RATINGS).body  # type: ignore[union-attr]
    other = sidecar("127.9.1.2", "client2", {"app": "client"})
    res2 = out.res(TypeUrl.CLUSTER, other)
    assert res2.get(REVIEWS) is res.get(REVIEWS)
    assert res2.get(RATINGS) is res.get(RATINGS)


def test_unpatched_resources_are_shared_objects() -> None:
    patch = """
  - applyTo: CLUSTER
    match: {cluster: {service: reviews.default.svc.cluster.local}}
    patch: {operation: MERGE, value: {connect_timeout: 7s}}
"""
    t = Translator()
    state = state_of(ef("c", patch))
    ctx = t.context(state)
    raw = t._generate(ctx, CLIENT, TypeUrl.CLUSTER)
    patched = t.generate(state, CLIENT, TypeUrl.CLUSTER)
    assert patched.get(RATINGS) is raw.get(RATINGS)
    assert patched.get(REVIEWS) is not raw.get(REVIEWS)
    # No applicable filter: the translator's own parts.
    lds = t.generate(state, CLIENT, TypeUrl.LISTENER)
    assert lds.parts == t._generate(ctx, CLIENT, TypeUrl.LISTENER).parts


# --- selection --------------------------------------------------------------------------------------


def _first_route_patch(name: str) -> str:
    return f"""
  - applyTo: HTTP_ROUTE
    match: {{routeConfiguration: {{vhost: {{name: {REVIEWS_VH}}}}}}}
    patch:
      operation: INSERT_FIRST
      value: {{name: {name}, match: {{path: /{name}}}, direct_response: {{status: 200}}}}
"""


def _route_names(out: Out, proxy: Proxy) -> list[str]:
    rcfg = out.msg(TypeUrl.ROUTE, "9080", proxy)
    return [r.name for v in rcfg.virtual_hosts if v.name == REVIEWS_VH for r in v.routes]


def test_selection_namespace_selector_and_priority() -> None:
    out = Out(
        ef("root", _first_route_patch("root"), namespace="istio-system"),
        ef("own", _first_route_patch("own")),
        ef("low", _first_route_patch("low"), extra="  priority: -5"),
        ef("other-ns", _first_route_patch("elsewhere"), namespace="other"),
        ef("selected", _first_route_patch("sel"), extra="  workloadSelector: {labels: {app: reviews}}"),
    )
    # Applied in order: low (priority -5), root (root namespace), own; each INSERT_FIRST.
    assert _route_names(out, CLIENT) == ["own", "root", "low", "default"]
    assert _route_names(out, REVIEWS_PROXY) == ["sel", "own", "root", "low", "default"]


def test_gateway_context_does_not_apply_to_sidecars() -> None:
    patch = _first_route_patch("gw").replace("routeConfiguration:", "context: GATEWAY, routeConfiguration:")
    out = Out(ef("gw", patch))
    assert _route_names(out, CLIENT) == ["default"]


# --- errors -------------------------------------------------------------------------------------------


def test_bad_patches_are_reported_and_skipped() -> None:
    bad = f"""
  - applyTo: HTTP_FILTER
    match: {{listener: {{name: {OUT_LISTENER}}}}}
    patch:
      operation: ADD
      value:{LUA_VALUE}
  - applyTo: HTTP_FILTER
    match: {{listener: {{name: {OUT_LISTENER}}}}}
    patch:
      operation: INSERT_FIRST
      value:
        name: nope
        typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.nope.v3.Nope}}
  - applyTo: CLUSTER
    match: {{cluster: {{service: reviews.default.svc.cluster.local}}}}
    patch: {{operation: MERGE, value: {{no_such_field: 1}}}}
  - applyTo: ROUTE_CONFIGURATION
    patch: {{operation: ADD, value: {{name: x}}}}
  - applyTo: CLUSTER
    match: {{cluster: {{name: "{RATINGS}"}}}}
    patch: {{operation: MERGE, value: {{connect_timeout: 4s}}}}
"""
    refs = ef("refs", "    []", extra="  targetRefs: [{kind: Service, name: reviews}]")
    out = Out(ef("bad", bad), refs)
    base = Out()
    # ADD appends lua after the router: Envoy would reject that, so it is skipped.
    assert out.http_filters(OUT_LISTENER) == base.http_filters(OUT_LISTENER)
    assert out.msg(TypeUrl.CLUSTER, RATINGS).connect_timeout.seconds == 4  # the good patch still applies
    errs = "\n".join(out.errors)
    assert "configPatches[0]" in errs and "router filter must be the last" in errs
    assert "nope" in errs  # unknown type
    assert "no_such_field" in errs
    assert "ADD is not valid for applyTo ROUTE_CONFIGURATION" in errs
    assert "targetRefs is not supported" in errs


def test_merge_producing_invalid_config_is_rejected() -> None:
    # A route without an action is invalid in Envoy (PGV oneof required).
    patch = f"""
  - applyTo: HTTP_ROUTE
    match: {{routeConfiguration: {{vhost: {{name: {REVIEWS_VH}}}}}}}
    patch: {{operation: INSERT_FIRST, value: {{name: broken, match: {{prefix: /}}}}}}
  - applyTo: CLUSTER
    match: {{cluster: {{service: reviews.default.svc.cluster.local}}}}
    patch: {{operation: MERGE, value: {{per_connection_buffer_limit_bytes: 1024}}}}
"""
    out = Out(ef("x", patch))
    assert _route_names(out, CLIENT) == ["default"]
    assert out.msg(TypeUrl.CLUSTER, REVIEWS).per_connection_buffer_limit_bytes.value == 1024
    assert any("action is required" in e for e in out.errors), out.errors


# --- the samples -------------------------------------------------------------------------------------

SAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "samples" / "ratelimit"
PRODUCTPAGE = """
apiVersion: v1
kind: Service
metadata: {name: productpage, namespace: default}
spec:
  selector: {app: productpage}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: productpage, namespace: default}
spec: {address: 127.9.0.9, labels: {app: productpage}}
"""
PP_PROXY = sidecar("127.9.0.9", "productpage-v1", {"app": "productpage"})


def _bucket(any_msg: Any) -> int:
    cfg = local_rate_limit_pb2.LocalRateLimit()
    assert any_msg.Unpack(cfg)
    return int(cfg.token_bucket.max_tokens)


def test_sample_per_route_inbound() -> None:
    out = Out(PRODUCTPAGE, (SAMPLES / "local-ratelimit-per-route.yaml").read_text(), proxy=PP_PROXY)
    m = out.hcm("127.9.0.9_9080")
    assert m.http_filters[0].name == "envoy.filters.http.local_ratelimit"
    route = m.route_config.virtual_hosts[0].routes[0]
    assert _bucket(route.typed_per_filter_config["envoy.filters.http.local_ratelimit"]) == 4
    assert out.errors == []


def test_sample_one_route() -> None:
    out = Out(PRODUCTPAGE, (SAMPLES / "local-ratelimit-one-route.yaml").read_text())
    assert out.http_filters(OUT_LISTENER)[-2:] == ["envoy.filters.http.local_ratelimit", "envoy.filters.http.router"]
    rcfg = out.msg(TypeUrl.ROUTE, "9080")
    vh = next(v for v in rcfg.virtual_hosts if v.name == "productpage.default.svc.cluster.local:9080")
    limited = {r.name: "envoy.filters.http.local_ratelimit" in r.typed_per_filter_config for r in vh.routes}
    assert limited == {"limited": True, "rest": False}
    assert out.errors == []
