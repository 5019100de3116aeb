"""RequestAuthentication -> Envoy `envoy.filters.http.jwt_authn`, as istiod builds it.

One provider per jwtRule (`origins-N`), every provider writing its verified
payload into dynamic metadata under the issuer (`payload_in_metadata`). The
requirement lets a request without a token through and rejects one whose token
does not verify (401): enforcing presence is AuthorizationPolicy's job
(`requestPrincipals`), which matches on that metadata (see rbac.py).

Unlike istiod, jwksUri is never fetched by the control plane (translation does
no I/O): Envoy fetches it through `remote_jwks` over the outbound cluster of
the service the URI names (istiod's `PILOT_JWT_ENABLE_REMOTE_JWKS` mode)."""

from __future__ import annotations

import base64
import binascii
import json
import urllib.parse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm

from .. import naming

if TYPE_CHECKING:
    from istiod_py.config.model import Config

    from ..context import PushContext

JWT_FILTER = "envoy.filters.http.jwt_authn"
# Where jwt_authn writes verified payloads; rbac.py matches request principals there.
PAYLOAD_METADATA_FILTER = JWT_FILTER
DEFAULT_JWKS_TIMEOUT_S = 5
JWKS_CACHE_S = 5 * 60

# istiod inlines a key nothing can sign with when it cannot get a JWKS, so every
# token for that issuer fails (fail closed) instead of Envoy rejecting the config.
FAKE_JWKS = json.dumps(
    {
        "keys": [
            {
                "kty": "RSA",
                "e": "AQAB",
                "n": (
                    "xAE7eB6qugXyCAG3yhh7pkDkT65pHymX-P7KfIupjf59vsdo91bSP9C8H07pSAGQO1MV_xFj9VswgsCg4R6otmg5PV"
                    "2He95lZdHtOcU5DXIg_pbhLdKXbi66GlVeK6ABZOUW3WYtnNHD-91gVuoeJT_DwtGGcp4ignkgXfkiEm4sw-4sfb4q"
                    "dt5oLbyVpmW6x9cfa7vs2WTfURiCrBoUqgBo_-4WTiULmmHSGZHOjzwa8WtrtOQGsAFjIbno85jp6MnGGGZPYZbDAa"
                    "_b3y5u-YpW7ypZrvD8BgtKVjgtQgZhLAGezMt0ua3DRrWnKqTZ0BJ_EyxOGuHJrLsn00fnMQ"
                ),
            }
        ]
    }
)


def _b64url_ok(value: Any) -> bool:
    if not isinstance(value, str) or not value:
        return False
    try:
        base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (ValueError, binascii.Error):
        return False
    return True


_KEY_FIELDS = {"RSA": ("n", "e"), "EC": ("x", "y"), "OKP": ("x",), "oct": ("k",)}


def jwks_usable(text: str) -> bool:
    """Whether Envoy will accept an inline JWKS: it rejects the whole config when
    none of the keys is a usable public key (istiod's validation rejects it too)."""
    try:
        doc = json.loads(text)
    except ValueError:
        return False
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list):
        return False
    for key in keys:
        if not isinstance(key, dict):
            continue
        fields = _KEY_FIELDS.get(str(key.get("kty")))
        if fields and all(_b64url_ok(key.get(f)) for f in fields):
            return True
    return False


def jwt_rules(configs: Sequence[Config]) -> list[Any]:
    """Every jwtRule of the selected RequestAuthentications, in config order."""
    out: list[Any] = []
    for cfg in configs:
        spec: Any = cfg.spec
        out.extend(spec.jwt_rules)
    return out


def issuers(configs: Sequence[Config]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for rule in jwt_rules(configs):
        if rule.issuer:
            seen.setdefault(rule.issuer, None)
    return tuple(seen)


def _jwks_cluster(ctx: PushContext, uri: str) -> tuple[str, str]:
    """(cluster, host) for a jwksUri: the outbound cluster of the service it names
    (istiod uses the same name when no such service exists; Envoy then fails the
    fetch at run time, which fails the token, never the config)."""
    parsed = urllib.parse.urlsplit(uri)
    host = parsed.hostname or ""
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    svc = ctx.state.services.get(host)
    if svc is None and "." not in host:
        for candidate in ctx.state.services.values():
            if candidate.hostname.split(".", 1)[0] == host:
                svc = candidate
                break
    return naming.outbound_cluster(port, svc.hostname if svc else host), host


def provider(ctx: PushContext, rule: Any) -> jwt_pb2.JwtProvider:
    p = jwt_pb2.JwtProvider(issuer=rule.issuer, payload_in_metadata=rule.issuer)
    p.audiences.extend(rule.audiences)
    p.forward = bool(rule.forward_original_token)
    if rule.output_payload_to_header:
        p.forward_payload_header = rule.output_payload_to_header
    for h in rule.from_headers:
        p.from_headers.add(name=h.name, value_prefix=h.prefix)
    p.from_params.extend(rule.from_params)
    p.from_cookies.extend(rule.from_cookies)
    for c in rule.output_claim_to_headers:
        p.claim_to_headers.add(header_name=c.header, claim_name=c.claim)
    if rule.jwks:
        # A JWKS Envoy cannot use would make it reject the listener: fail closed instead.
        p.local_jwks.inline_string = rule.jwks if jwks_usable(rule.jwks) else FAKE_JWKS
    elif rule.jwks_uri:
        cluster, _ = _jwks_cluster(ctx, rule.jwks_uri)
        remote = p.remote_jwks
        remote.http_uri.uri = rule.jwks_uri
        remote.http_uri.cluster = cluster
        if rule.HasField("timeout") and (rule.timeout.seconds or rule.timeout.nanos):
            remote.http_uri.timeout.CopyFrom(rule.timeout)
        else:
            remote.http_uri.timeout.seconds = DEFAULT_JWKS_TIMEOUT_S
        remote.cache_duration.seconds = JWKS_CACHE_S
    else:
        # istiod would discover the JWKS from the issuer's OpenID configuration (I/O
        # translation does not do): fail closed as istiod does when that fails.
        p.local_jwks.inline_string = FAKE_JWKS
    return p


def _name(i: int) -> str:
    return f"origins-{i}"


def authentication(ctx: PushContext, configs: Sequence[Config]) -> jwt_pb2.JwtAuthentication | None:
    """istiod's convertToEnvoyJwtConfig: None when no jwtRule applies."""
    rules = jwt_rules(configs)
    if not rules:
        return None
    out = jwt_pb2.JwtAuthentication(bypass_cors_preflight=True)
    inner_and: list[jwt_pb2.JwtRequirement] = []
    outer_or: list[jwt_pb2.JwtRequirement] = []
    for i, rule in enumerate(rules):
        name = _name(i)
        out.providers[name].CopyFrom(provider(ctx, rule))
        # {this provider OR allow_missing}: a token, if present for it, must verify.
        req = jwt_pb2.JwtRequirement()
        req.requires_any.requirements.add(provider_name=name)
        req.requires_any.requirements.add().allow_missing.SetInParent()
        inner_and.append(req)
        outer_or.append(jwt_pb2.JwtRequirement(provider_name=name))
    requirement_rule = jwt_pb2.RequirementRule(match=rc.RouteMatch(prefix="/"))
    if len(inner_and) == 1:
        requirement_rule.requires.CopyFrom(inner_and[0])
    else:
        # OR of {P1, P2, ..., AND{OR{P1, missing}, OR{P2, missing}, ...}}: the AND makes
        # every present token verify; the plain ORs cover providers sharing a location.
        top = requirement_rule.requires.requires_any
        top.requirements.extend(outer_or)
        top.requirements.add().requires_all.requirements.extend(inner_and)
    out.rules.append(requirement_rule)
    return out


def http_filter(ctx: PushContext, configs: Sequence[Config]) -> hcm.HttpFilter | None:
    cfg = authentication(ctx, configs)
    if cfg is None:
        return None
    f = hcm.HttpFilter(name=JWT_FILTER)
    f.typed_config.Pack(cfg)
    return f
