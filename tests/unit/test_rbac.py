"""AuthorizationPolicy -> Envoy RBAC as istiod builds it: translate a small mesh
and assert on the inbound listener's filters (selection, action order, each
from/to/when field), plus one run of `envoy --mode validate` over everything."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as net_rbac_pb2
from google.protobuf import json_format

from istiod_py.model import MeshConfig, MeshState, Proxy, parse_proxy
from istiod_py.translate.generate import Translator
from istiod_py.xds.types import TypeUrl
from tests.support.envoy import envoy_binary
from tests.support.states import mesh_state

BASE = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: default}
spec: {address: 127.9.0.1, labels: {app: reviews, version: v1}}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec:
  selector: {app: db}
  ports: [{name: tcp, port: 5432}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: db-1, namespace: default}
spec: {address: 127.9.0.3, labels: {app: db}}
---
apiVersion: v1
kind: Service
metadata: {name: authz, namespace: istio-system}
spec:
  selector: {app: authz}
  ports: [{name: http, port: 8000}, {name: grpc, port: 9000}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: authz-1, namespace: istio-system}
spec: {address: 127.9.0.9, labels: {app: authz}}
"""

PROVIDERS = [
    {
        "name": "http-authz",
        "envoyExtAuthzHttp": {
            "service": "authz.istio-system.svc.cluster.local",
            "port": 8000,
            "includeRequestHeadersInCheck": ["x-ext-authz", "x-user-*"],
            "headersToUpstreamOnAllow": ["x-authz-result"],
            "headersToDownstreamOnDeny": ["x-authz-reason"],
            "statusOnError": "503",
            "failOpen": False,
            "timeout": "2s",
        },
    },
    {"name": "grpc-authz", "envoyExtAuthzGrpc": {"service": "authz.istio-system.svc.cluster.local", "port": 9000}},
    {"name": "missing", "envoyExtAuthzHttp": {"service": "nope.default.svc.cluster.local", "port": 1}},
]


def state_of(*docs: str) -> MeshState:
    return mesh_state(BASE, *docs, mesh=MeshConfig.from_dict({"extensionProviders": PROVIDERS}))


def proxy(ip: str = "127.9.0.1", labels: dict[str, str] | None = None, ns: str = "default") -> Proxy:
    return parse_proxy(
        f"sidecar~{ip}~w.{ns}~{ns}.svc.cluster.local",
        {"NAMESPACE": ns, "LABELS": labels or {"app": "reviews", "version": "v1"}, "INTERCEPTION_MODE": "NONE"},
    )


def listeners(*docs: str, p: Proxy | None = None) -> dict[str, listener_pb2.Listener]:
    out = Translator().generate(state_of(*docs), p or proxy(), TypeUrl.LISTENER)
    result = {}
    for name, built in out.index.items():
        lst = listener_pb2.Listener()
        lst.ParseFromString(built.body)
        result[name] = lst
    return result


def inbound_filters(*docs: str, p: Proxy | None = None, port: int = 9080) -> list[hcm.HttpFilter]:
    p = p or proxy()
    lst = listeners(*docs, p=p)[f"{p.ip}_{port}"]
    for f in lst.filter_chains[-1].filters:
        if f.name == "envoy.filters.network.http_connection_manager":
            m = hcm.HttpConnectionManager()
            assert f.typed_config.Unpack(m)
            return list(m.http_filters)
    raise AssertionError("no HCM on the inbound listener")


def tcp_filters(*docs: str) -> list[Any]:
    p = proxy("127.9.0.3", {"app": "db"})
    lst = listeners(*docs, p=p)["127.9.0.3_5432"]
    return list(lst.filter_chains[-1].filters)


def rbacs(filters: list[hcm.HttpFilter]) -> list[http_rbac_pb2.RBAC]:
    out = []
    for f in filters:
        if f.name == "envoy.filters.http.rbac":
            r = http_rbac_pb2.RBAC()
            assert f.typed_config.Unpack(r)
            out.append(r)
    return out


def policy(spec: str, name: str = "p", ns: str = "default") -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {name}, namespace: {ns}}}
spec:
{spec}
"""


def as_dict(msg: Any) -> Any:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def only_policy(*docs: str) -> dict[str, Any]:
    (r,) = rbacs(inbound_filters(*docs))
    assert len(r.rules.policies) == 1, list(r.rules.policies)
    return as_dict(next(iter(r.rules.policies.values())))


# --- selection -----------------------------------------------------------------------------


def test_no_policy_no_filters() -> None:
    names = [f.name for f in inbound_filters()]
    assert "envoy.filters.http.rbac" not in names and "envoy.filters.http.jwt_authn" not in names


@pytest.mark.parametrize(
    ("doc", "applies"),
    [
        (policy("  action: DENY\n  rules: [{}]", ns="istio-system"), True),  # root namespace: mesh-wide
        (policy("  action: DENY\n  rules: [{}]", ns="default"), True),
        (policy("  action: DENY\n  rules: [{}]", ns="other"), False),
        (policy("  selector: {matchLabels: {app: reviews}}\n  action: DENY\n  rules: [{}]"), True),
        (policy("  selector: {matchLabels: {app: ratings}}\n  action: DENY\n  rules: [{}]"), False),
        (policy("  selector: {matchLabels: {app: reviews}}\n  action: DENY\n  rules: [{}]", ns="istio-system"), True),
        (policy("  targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: gw}\n  action: DENY"), False),
    ],
)
def test_policy_selection(doc: str, applies: bool) -> None:
    assert bool(rbacs(inbound_filters(doc))) == applies


def test_target_ref_is_reported_unsupported() -> None:
    from istiod_py.translate.security.rbac import unsupported_reason

    st = state_of(policy("  targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: gw}"))
    (cfg,) = st.of_kind("AuthorizationPolicy")
    reason = unsupported_reason(cfg)
    assert reason is not None and "targetRef" in reason and "default/p" in reason


# --- actions and order --------------------------------------------------------------------------


def test_allow_with_no_rules_denies_all_and_empty_rule_allows_all() -> None:
    (r,) = rbacs(inbound_filters(policy("  {}")))
    assert r.rules.action == rbac_pb2.RBAC.ALLOW and not r.rules.policies
    p = only_policy(policy("  rules: [{}]"))
    assert p == {"permissions": [{"any": True}], "principals": [{"any": True}]}


def test_deny_without_rules_is_a_no_op() -> None:
    assert not rbacs(inbound_filters(policy("  action: DENY")))


def test_filter_order_jwt_custom_audit_deny_allow_before_router() -> None:
    docs = [
        policy("  action: ALLOW\n  rules: [{to: [{operation: {paths: [/a]}}]}]", "allow"),
        policy("  action: DENY\n  rules: [{to: [{operation: {paths: [/b]}}]}]", "deny"),
        policy("  action: AUDIT\n  rules: [{to: [{operation: {paths: [/c]}}]}]", "audit"),
        policy("  action: CUSTOM\n  provider: {name: http-authz}\n  rules: [{to: [{operation: {paths: [/d]}}]}]", "c"),
        REQUEST_AUTHN,
    ]
    filters = inbound_filters(*docs)
    names = [f.name for f in filters]
    assert names[:6] == [
        "envoy.filters.http.jwt_authn",
        "envoy.filters.http.rbac",
        "envoy.filters.http.ext_authz",
        "envoy.filters.http.rbac",
        "envoy.filters.http.rbac",
        "envoy.filters.http.rbac",
    ]
    assert names[-1] == "envoy.filters.http.router"
    custom, audit, deny, allow = rbacs(filters)
    assert not custom.HasField("rules") and custom.shadow_rules_stat_prefix == "istio_ext_authz_"
    assert list(custom.shadow_rules.policies) == ["istio-ext-authz-ns[default]-policy[c]-rule[0]"]
    assert audit.rules.action == rbac_pb2.RBAC.LOG
    assert deny.rules.action == rbac_pb2.RBAC.DENY and list(deny.rules.policies) == ["ns[default]-policy[deny]-rule[0]"]
    assert allow.rules.action == rbac_pb2.RBAC.ALLOW


def test_outbound_listeners_carry_no_authz() -> None:
    client = proxy("127.9.1.1", {"app": "client"})
    for name, lst in listeners(policy("  {}", ns="istio-system"), p=client).items():
        assert "envoy.filters.http.rbac" not in str(lst), name


# --- from ---------------------------------------------------------------------------------


def test_principals_namespaces_and_service_accounts() -> None:
    p = only_policy(
        policy("""  rules:
  - from:
    - source:
        principals: [cluster.local/ns/default/sa/sleep, "*/sa/admin", "cluster.local/ns/prod/*", "*"]
        notPrincipals: [cluster.local/ns/default/sa/evil]
    - source: {namespaces: [foo], notNamespaces: ["ba*"], serviceAccounts: [bar, other/baz]}""")
    )
    first, second = p["principals"]
    (yes, no) = first["and_ids"]["ids"]
    names = [i["authenticated"]["principal_name"] for i in yes["or_ids"]["ids"]]
    assert names == [
        {"exact": "spiffe://cluster.local/ns/default/sa/sleep"},
        {"safe_regex": {"regex": "spiffe://.*/sa/admin"}},
        {"prefix": "spiffe://cluster.local/ns/prod/"},
        {"safe_regex": {"regex": ".+"}},
    ]
    assert no["not_id"]["authenticated"]["principal_name"] == {"exact": "spiffe://cluster.local/ns/default/sa/evil"}
    ns_yes, ns_no, sa = second["and_ids"]["ids"]
    assert ns_yes["authenticated"]["principal_name"]["safe_regex"]["regex"] == ".*/ns/foo/.*"
    assert ns_no["not_id"]["authenticated"]["principal_name"]["safe_regex"]["regex"] == ".*/ns/ba.*/.*"
    sas = [i["authenticated"]["principal_name"]["safe_regex"]["regex"] for i in sa["or_ids"]["ids"]]
    assert sas == ["spiffe://[^/]+/ns/default/sa/bar", "spiffe://[^/]+/ns/other/sa/baz"]


def test_ip_blocks_and_remote_ip_blocks() -> None:
    p = only_policy(
        policy("""  rules:
  - from:
    - source: {ipBlocks: [10.0.0.0/8, 1.2.3.4], notIpBlocks: [10.1.0.0/16], remoteIpBlocks: ["2001:db8::/32"]}""")
    )
    ip, not_ip, remote = p["principals"][0]["and_ids"]["ids"]
    assert ip["or_ids"]["ids"] == [
        {"direct_remote_ip": {"address_prefix": "10.0.0.0", "prefix_len": 8}},
        {"direct_remote_ip": {"address_prefix": "1.2.3.4", "prefix_len": 32}},
    ]
    assert not_ip == {"not_id": {"direct_remote_ip": {"address_prefix": "10.1.0.0", "prefix_len": 16}}}
    assert remote == {"remote_ip": {"address_prefix": "2001:db8::", "prefix_len": 32}}


# --- to -------------------------------------------------------------------------------------


def test_operation_fields() -> None:
    p = only_policy(
        policy("""  rules:
  - to:
    - operation:
        hosts: [example.com, "*.example.org"]
        notHosts: ["admin.*"]
        ports: ["9080"]
        notPorts: ["9090"]
        methods: [GET, HEAD]
        notMethods: [DELETE]
        paths: [/exact, "/prefix/*", "*.png", "/api/{*}/items/{**}"]
        notPaths: [/admin]""")
    )
    (perm,) = p["permissions"]
    hosts, not_hosts, port, not_port, methods, not_methods, paths, not_paths = perm["and_rules"]["rules"]
    assert [h["header"]["string_match"]["safe_regex"]["regex"] for h in hosts["or_rules"]["rules"]] == [
        r"(?i)example\.com(:[0-9]+)?",
        r"(?i).*\.example\.org(:[0-9]+)?",
    ]
    assert not_hosts["not_rule"]["header"]["string_match"]["safe_regex"]["regex"] == r"(?i)admin\..*(:[0-9]+)?"
    assert port == {"destination_port": 9080} and not_port == {"not_rule": {"destination_port": 9090}}
    assert methods["or_rules"]["rules"][0] == {"header": {"name": ":method", "string_match": {"exact": "GET"}}}
    assert not_methods == {"not_rule": {"header": {"name": ":method", "string_match": {"exact": "DELETE"}}}}
    exact, prefix, suffix, template = paths["or_rules"]["rules"]
    assert exact == {"url_path": {"path": {"exact": "/exact"}}}
    assert prefix == {"url_path": {"path": {"prefix": "/prefix/"}}}
    assert suffix == {"url_path": {"path": {"suffix": ".png"}}}
    assert template == {"url_path": {"path": {"safe_regex": {"regex": "/api/[^/]+/items/.*"}}}}
    assert not_paths == {"not_rule": {"url_path": {"path": {"exact": "/admin"}}}}
    assert p["principals"] == [{"any": True}]


def test_to_entries_are_ored_and_from_entries_are_ored() -> None:
    p = only_policy(
        policy("""  rules:
  - from: [{source: {ipBlocks: [1.1.1.1]}}, {source: {ipBlocks: [2.2.2.2]}}]
    to: [{operation: {methods: [GET]}}, {operation: {paths: [/x]}}]""")
    )
    assert len(p["principals"]) == 2 and len(p["permissions"]) == 2


# --- when ------------------------------------------------------------------------------------


def test_when_conditions_split_into_principals_and_permissions() -> None:
    p = only_policy(
        policy("""  rules:
  - from: [{source: {namespaces: [foo]}}]
    to: [{operation: {methods: [GET]}}]
    when:
    - {key: "request.headers[x-token]", values: [secret, "pre*"], notValues: [bad]}
    - {key: source.ip, values: [10.0.0.1]}
    - {key: remote.ip, values: [10.0.0.2]}
    - {key: source.namespace, values: [foo]}
    - {key: source.principal, values: [cluster.local/ns/foo/sa/x]}
    - {key: destination.ip, values: [127.0.0.0/8]}
    - {key: destination.port, values: ["9080"]}
    - {key: connection.sni, values: ["*.local"]}
    - {key: "experimental.envoy.filters.network.mysql_proxy[db.table]", values: ["[update]"]}""")
    )
    (principal,) = p["principals"]
    ids = principal["and_ids"]["ids"]
    assert ids[0]["authenticated"]["principal_name"]["safe_regex"]["regex"] == ".*/ns/foo/.*"  # from first
    header_yes, header_no = ids[1], ids[2]
    assert header_yes["or_ids"]["ids"] == [
        {"header": {"name": "x-token", "string_match": {"exact": "secret"}}},
        {"header": {"name": "x-token", "string_match": {"prefix": "pre"}}},
    ]
    assert header_no == {"not_id": {"header": {"name": "x-token", "string_match": {"exact": "bad"}}}}
    assert ids[3] == {"direct_remote_ip": {"address_prefix": "10.0.0.1", "prefix_len": 32}}
    assert ids[4] == {"remote_ip": {"address_prefix": "10.0.0.2", "prefix_len": 32}}
    assert ids[6]["authenticated"]["principal_name"] == {"exact": "spiffe://cluster.local/ns/foo/sa/x"}
    (perm,) = p["permissions"]
    rules = perm["and_rules"]["rules"]
    assert rules[0]["header"]["name"] == ":method"
    assert rules[1] == {"destination_ip": {"address_prefix": "127.0.0.0", "prefix_len": 8}}
    assert rules[2] == {"destination_port": 9080}
    assert rules[3] == {"requested_server_name": {"suffix": ".local"}}
    assert rules[4]["metadata"] == {
        "filter": "envoy.filters.network.mysql_proxy",
        "path": [{"key": "db.table"}],
        "value": {"list_match": {"one_of": {"string_match": {"exact": "[update]"}}}},
    }


REQUEST_AUTHN = """
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  jwtRules:
  - issuer: https://issuer.example.com
    jwks: '{"keys": [{"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
      "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}'
  - issuer: other
    jwks: '{"keys": []}'
"""


def _jwt_meta(issuer: str, path: list[str], value: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {
            "filter": "envoy.filters.http.jwt_authn",
            "path": [{"key": issuer}, *({"key": k} for k in path)],
            "value": value,
        }
    }


def test_request_principals_match_jwt_payload_per_issuer() -> None:
    p = only_policy(
        REQUEST_AUTHN,
        policy("""  rules:
  - from:
    - source:
        requestPrincipals: [https://issuer.example.com/alice, "other/*", "*/bob", "*"]
        notRequestPrincipals: [unknown/eve]"""),
    )
    yes, no = p["principals"][0]["and_ids"]["ids"]
    alice, other_any, bob, anyone = yes["or_ids"]["ids"]
    iss = "https://issuer.example.com"
    assert alice == _jwt_meta(iss, ["sub"], {"string_match": {"exact": "alice"}})
    assert other_any == _jwt_meta("other", ["iss"], {"present_match": True})
    assert _jwt_meta(iss, ["sub"], {"string_match": {"suffix": "/bob"}}) in bob["or_ids"]["ids"]
    assert _jwt_meta("other", ["sub"], {"string_match": {"exact": "bob"}}) in bob["or_ids"]["ids"]
    assert anyone["or_ids"]["ids"] == [
        _jwt_meta(iss, ["iss"], {"present_match": True}),
        _jwt_meta("other", ["iss"], {"present_match": True}),
    ]
    # An issuer no RequestAuthentication configures can never be verified.
    assert no == {"not_id": {"not_id": {"any": True}}}


def test_request_auth_claims_audiences_presenter() -> None:
    p = only_policy(
        REQUEST_AUTHN.split("  - issuer: other")[0],
        policy("""  rules:
  - when:
    - {key: "request.auth.claims[groups]", values: [admin]}
    - {key: "request.auth.claims[nested][role]", values: ["dev*"]}
    - {key: request.auth.audiences, values: [svc]}
    - {key: request.auth.presenter, values: [app]}"""),
    )
    groups, nested, aud, azp = p["principals"][0]["and_ids"]["ids"]
    iss = "https://issuer.example.com"
    assert groups["or_ids"]["ids"] == [
        _jwt_meta(iss, ["groups"], {"string_match": {"exact": "admin"}}),
        _jwt_meta(iss, ["groups"], {"list_match": {"one_of": {"string_match": {"exact": "admin"}}}}),
    ]
    assert nested["or_ids"]["ids"][0] == _jwt_meta(iss, ["nested", "role"], {"string_match": {"prefix": "dev"}})
    assert aud["or_ids"]["ids"][0] == _jwt_meta(iss, ["aud"], {"string_match": {"exact": "svc"}})
    assert azp["or_ids"]["ids"][0] == _jwt_meta(iss, ["azp"], {"string_match": {"exact": "app"}})


# --- TCP ----------------------------------------------------------------------------------------


def net_rbacs(filters: list[Any]) -> list[net_rbac_pb2.RBAC]:
    out = []
    for f in filters:
        if f.name == "envoy.filters.network.rbac":
            r = net_rbac_pb2.RBAC()
            assert f.typed_config.Unpack(r)
            out.append(r)
    return out


def test_tcp_workload_gets_network_rbac_before_tcp_proxy() -> None:
    filters = tcp_filters(
        policy("  rules: [{from: [{source: {ipBlocks: [10.0.0.0/8]}}], to: [{operation: {ports: ['5432']}}]}]")
    )
    assert [f.name for f in filters] == ["envoy.filters.network.rbac", "envoy.filters.network.tcp_proxy"]
    (r,) = net_rbacs(filters)
    assert r.stat_prefix == "tcp." and r.rules.action == rbac_pb2.RBAC.ALLOW
    (pol,) = r.rules.policies.values()
    assert as_dict(pol) == {
        "permissions": [{"destination_port": 5432}],
        "principals": [{"direct_remote_ip": {"address_prefix": "10.0.0.0", "prefix_len": 8}}],
    }


def test_http_only_fields_on_tcp_drop_allow_rules_and_widen_deny_rules() -> None:
    allow = policy(
        """  rules:
  - to: [{operation: {methods: [GET]}}]
  - from: [{source: {ipBlocks: [10.0.0.1]}}]""",
        "allow",
    )
    deny = policy(
        """  action: DENY
  rules:
  - from: [{source: {ipBlocks: [10.0.0.2], requestPrincipals: ["*"]}}]
    to: [{operation: {methods: [POST], ports: ['5432']}}]""",
        "deny",
    )
    deny_r, allow_r = net_rbacs(tcp_filters(allow, deny))
    # ALLOW: the HTTP-only rule is gone (smaller allow), the TCP one kept.
    assert list(allow_r.rules.policies) == ["ns[default]-policy[allow]-rule[1]"]
    # DENY: only the HTTP-only fields are ignored (wider deny).
    (pol,) = deny_r.rules.policies.values()
    assert as_dict(pol) == {
        "permissions": [{"destination_port": 5432}],
        "principals": [{"direct_remote_ip": {"address_prefix": "10.0.0.2", "prefix_len": 32}}],
    }


def test_allow_policy_of_only_http_rules_denies_all_tcp() -> None:
    (r,) = net_rbacs(tcp_filters(policy("  rules: [{to: [{operation: {paths: [/x]}}]}]")))
    assert r.rules.action == rbac_pb2.RBAC.ALLOW and not r.rules.policies


def test_http_ports_get_no_network_rbac() -> None:
    p = proxy()
    lst = listeners(policy("  {}"), p=p)[f"{p.ip}_9080"]
    assert "envoy.filters.network.rbac" not in [f.name for f in lst.filter_chains[-1].filters]


# --- CUSTOM -------------------------------------------------------------------------------------


def custom(provider: str, name: str = "ext") -> str:
    return policy(
        f"  action: CUSTOM\n  provider: {{name: {provider}}}\n  rules: [{{to: [{{operation: {{paths: [/x]}}}}]}}]", name
    )


def test_custom_http_provider() -> None:
    filters = inbound_filters(custom("http-authz"))
    ext = next(f for f in filters if f.name == "envoy.filters.http.ext_authz")
    cfg = ext_authz_pb2.ExtAuthz()
    assert ext.typed_config.Unpack(cfg)
    d = as_dict(cfg)
    assert d["http_service"]["server_uri"] == {
        "uri": "http://authz.istio-system.svc.cluster.local",
        "cluster": "outbound|8000||authz.istio-system.svc.cluster.local",
        "timeout": "2s",
    }
    assert d["allowed_headers"]["patterns"] == [
        {"exact": "x-ext-authz", "ignore_case": True},
        {"prefix": "x-user-", "ignore_case": True},
    ]
    assert d["http_service"]["authorization_response"]["allowed_upstream_headers"]["patterns"][0]["exact"] == (
        "x-authz-result"
    )
    assert d["status_on_error"] == {"code": "ServiceUnavailable"}
    assert d["filter_enabled_metadata"] == {
        "filter": "envoy.filters.http.rbac",
        "path": [{"key": "istio_ext_authz_shadow_effective_policy_id"}],
        "value": {"string_match": {"prefix": "istio-ext-authz"}},
    }
    assert d["transport_api_version"] == "V3"


def test_custom_grpc_provider() -> None:
    filters = inbound_filters(custom("grpc-authz"))
    cfg = ext_authz_pb2.ExtAuthz()
    assert next(f for f in filters if f.name == "envoy.filters.http.ext_authz").typed_config.Unpack(cfg)
    assert cfg.grpc_service.envoy_grpc.cluster_name == "outbound|9000||authz.istio-system.svc.cluster.local"
    assert cfg.grpc_service.timeout.seconds == 600


@pytest.mark.parametrize("provider", ["missing", "not-configured"])
def test_broken_custom_provider_fails_closed(provider: str) -> None:
    filters = inbound_filters(custom(provider))
    assert "envoy.filters.http.ext_authz" not in [f.name for f in filters]
    (r,) = rbacs(filters)
    assert r.rules.action == rbac_pb2.RBAC.DENY
    assert list(r.rules.policies) == ["ns[default]-policy[ext]-rule[0]"]


def test_two_custom_providers_on_one_workload_fail_closed() -> None:
    filters = inbound_filters(custom("http-authz", "a"), custom("grpc-authz", "b"))
    assert "envoy.filters.http.ext_authz" not in [f.name for f in filters]
    (r,) = rbacs(filters)
    assert r.rules.action == rbac_pb2.RBAC.DENY and len(r.rules.policies) == 2


# --- Envoy accepts all of it -------------------------------------------------------------------


def test_envoy_validates_every_generated_filter(tmp_path: Path) -> None:
    everything = [
        REQUEST_AUTHN,
        custom("http-authz"),
        policy("  action: AUDIT\n  rules: [{to: [{operation: {paths: ['*']}}]}]", "audit"),
        policy(
            """  action: DENY
  rules:
  - from: [{source: {notNamespaces: [foo], remoteIpBlocks: [10.0.0.0/8], requestPrincipals: ["*/x"]}}]
    to: [{operation: {notHosts: ["*.evil"], paths: ["/api/{*}"], notMethods: [GET]}}]
    when:
    - {key: "request.auth.claims[groups]", values: [a]}
    - {key: connection.sni, values: ["*"]}
    - {key: "request.headers[x-a]", values: ["*"]}""",
            "deny",
        ),
        policy(
            """  rules:
  - from: [{source: {principals: ["*"], serviceAccounts: [sa]}}]
    to: [{operation: {hosts: ["*"], ports: ["9080"]}}]
    when: [{key: destination.ip, values: ["::1/128"]}, {key: request.auth.audiences, values: ["*"]}]""",
            "allow",
        ),
    ]
    p = proxy()
    http_lst = listeners(*everything, p=p)[f"{p.ip}_9080"]
    tcp_lst = listeners(*everything, custom("grpc-authz"), p=proxy("127.9.0.3", {"app": "db"}))["127.9.0.3_5432"]
    clusters = [
        {
            "name": name,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name, "endpoints": []},
            **({"typed_extension_protocol_options": H2} if "9000" in name else {}),
        }
        for name in (
            "inbound|9080||",
            "inbound|5432||",
            "outbound|8000||authz.istio-system.svc.cluster.local",
            "outbound|9000||authz.istio-system.svc.cluster.local",
        )
    ]
    bootstrap = {
        "static_resources": {
            "listeners": [json_format.MessageToDict(http_lst), json_format.MessageToDict(tcp_lst)],
            "clusters": clusters,
        }
    }
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(bootstrap))
    run = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--use-dynamic-base-id", "-l", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


H2 = {
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}},
    }
}
