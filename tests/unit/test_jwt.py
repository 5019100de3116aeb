"""RequestAuthentication -> envoy.filters.http.jwt_authn as istiod builds it."""

from __future__ import annotations

import json
from typing import Any

from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from google.protobuf import json_format

from istiod_py.translate.security import jwt
from tests.unit.test_rbac import inbound_filters, policy, proxy

EC_KEY = {
    "kty": "EC",
    "crv": "P-256",
    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
}
JWKS = json.dumps({"keys": [EC_KEY]})


def request_authn(rules: str, name: str = "jwt", ns: str = "default", selector: str = "") -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: {name}, namespace: {ns}}}
spec:
{selector}
  jwtRules:
{rules}
"""


def jwt_config(*docs: str) -> dict[str, Any]:
    for f in inbound_filters(*docs):
        if f.name == jwt.JWT_FILTER:
            cfg = jwt_pb2.JwtAuthentication()
            assert f.typed_config.Unpack(cfg)
            out: dict[str, Any] = json_format.MessageToDict(cfg, preserving_proto_field_name=True)
            return out
    raise AssertionError("no jwt_authn filter")


def test_single_issuer_allows_missing_token_and_requires_a_valid_one() -> None:
    cfg = jwt_config(
        request_authn(f"""  - issuer: issuer-1
    audiences: [svc-a]
    jwks: '{JWKS}'
    fromHeaders: [{{name: x-jwt, prefix: "Bearer "}}]
    fromParams: [token]
    outputPayloadToHeader: x-payload
    forwardOriginalToken: true
    outputClaimToHeaders: [{{header: x-sub, claim: sub}}]""")
    )
    assert cfg["bypass_cors_preflight"] is True
    assert cfg["providers"] == {
        "origins-0": {
            "issuer": "issuer-1",
            "audiences": ["svc-a"],
            "local_jwks": {"inline_string": JWKS},
            "forward": True,
            "from_headers": [{"name": "x-jwt", "value_prefix": "Bearer "}],
            "from_params": ["token"],
            "forward_payload_header": "x-payload",
            "payload_in_metadata": "issuer-1",
            "claim_to_headers": [{"header_name": "x-sub", "claim_name": "sub"}],
        }
    }
    assert cfg["rules"] == [
        {
            "match": {"prefix": "/"},
            "requires": {"requires_any": {"requirements": [{"provider_name": "origins-0"}, {"allow_missing": {}}]}},
        }
    ]


def test_several_issuers_every_present_token_must_verify() -> None:
    cfg = jwt_config(
        request_authn(f"  - {{issuer: a, jwks: '{JWKS}'}}", "a"),
        request_authn(f"  - {{issuer: b, jwks: '{JWKS}'}}", "b", ns="istio-system"),
    )
    assert sorted(cfg["providers"]) == ["origins-0", "origins-1"]
    req = cfg["rules"][0]["requires"]["requires_any"]["requirements"]
    assert req[:2] == [{"provider_name": "origins-0"}, {"provider_name": "origins-1"}]
    assert req[2] == {
        "requires_all": {
            "requirements": [
                {"requires_any": {"requirements": [{"provider_name": f"origins-{i}"}, {"allow_missing": {}}]}}
                for i in (0, 1)
            ]
        }
    }


def test_selector_scopes_request_authentication() -> None:
    doc = request_authn(f"  - {{issuer: a, jwks: '{JWKS}'}}", selector="  selector: {matchLabels: {app: other}}")
    assert jwt.JWT_FILTER not in [f.name for f in inbound_filters(doc)]
    doc = request_authn(f"  - {{issuer: a, jwks: '{JWKS}'}}", selector="  selector: {matchLabels: {app: reviews}}")
    assert jwt.JWT_FILTER in [f.name for f in inbound_filters(doc)]


def test_jwks_uri_fetched_by_envoy_through_the_outbound_cluster() -> None:
    cfg = jwt_config(
        request_authn("""  - issuer: a
    jwksUri: http://authz.istio-system.svc.cluster.local:8000/jwks.json
    timeout: 3s
  - issuer: b
    jwksUri: https://login.example.com/keys""")
    )
    a = cfg["providers"]["origins-0"]["remote_jwks"]
    assert a["http_uri"] == {
        "uri": "http://authz.istio-system.svc.cluster.local:8000/jwks.json",
        "cluster": "outbound|8000||authz.istio-system.svc.cluster.local",
        "timeout": "3s",
    }
    assert a["cache_duration"] == "300s"
    b = cfg["providers"]["origins-1"]["remote_jwks"]["http_uri"]
    assert b["cluster"] == "outbound|443||login.example.com" and b["timeout"] == "5s"


def test_unusable_or_missing_jwks_fails_closed_with_a_key_nobody_holds() -> None:
    cfg = jwt_config(request_authn("  - {issuer: a, jwks: '{\"keys\": []}'}\n  - {issuer: b}"))
    for name in ("origins-0", "origins-1"):
        assert cfg["providers"][name]["local_jwks"]["inline_string"] == jwt.FAKE_JWKS
    assert jwt.jwks_usable(jwt.FAKE_JWKS) and jwt.jwks_usable(JWKS)
    assert not jwt.jwks_usable("not json") and not jwt.jwks_usable('{"keys": [{"kty": "RSA", "n": "x"}]}')


def test_request_authentication_alone_adds_no_rbac() -> None:
    names = [f.name for f in inbound_filters(request_authn(f"  - {{issuer: a, jwks: '{JWKS}'}}"))]
    assert names[0] == jwt.JWT_FILTER and "envoy.filters.http.rbac" not in names


def test_gateway_direction_gets_the_filters_outbound_does_not() -> None:
    from istiod_py.translate.generate import Translator
    from istiod_py.translate.security.rbac import authn_authz_http_filters
    from tests.unit.test_rbac import state_of

    ctx = Translator().context(state_of(request_authn(f"  - {{issuer: a, jwks: '{JWKS}'}}"), policy("  {}")))
    p = proxy()
    assert [f.name for f in authn_authz_http_filters(ctx, p, "gateway", 80)][:1] == [jwt.JWT_FILTER]
    assert authn_authz_http_filters(ctx, p, "outbound", 9080) == []
