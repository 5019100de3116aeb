"""Semantic validation: each bad resource yields exactly the expected error and field path."""

from __future__ import annotations

import pytest

from istiod_py.config.loader import load_text


def _doc(kind: str, spec: str, group: str = "networking.istio.io/v1") -> str:
    return f"apiVersion: {group}\nkind: {kind}\nmetadata: {{name: x, namespace: ns}}\nspec:\n{spec}"


SEC = "security.istio.io/v1"
ROUTE = "    route: [{destination: {host: r}}]\n"

CASES = [
    (
        "VirtualService",
        _doc("VirtualService", "  gateways: [gw]\n  tcp: [{route: [{destination: {host: r}}]}]\n"),
        "spec.hosts",
        "hosts is required",
    ),
    (
        "VirtualService",
        _doc("VirtualService", "  hosts: [r]\n  http:\n  - match: [{uri: {exact: /}}]\n"),
        "spec.http[0]",
        "needs one of route",
    ),
    (
        "VirtualService",
        _doc("VirtualService", "  hosts: [r]\n  http:\n  - redirect: {uri: /x}\n" + ROUTE),
        "spec.http[0]",
        "mutually exclusive",
    ),
    (
        "VirtualService",
        _doc("VirtualService", "  hosts: [r]\n  http:\n  - route: [{destination: {host: r}, weight: 150}]\n"),
        "spec.http[0].route[0].weight",
        "between 0 and 100",
    ),
    (
        "VirtualService",
        _doc("VirtualService", "  hosts: [r]\n  http:\n  - retries: {attempts: -1}\n" + ROUTE),
        "spec.http[0].retries.attempts",
        "negative",
    ),
    (
        "VirtualService",
        _doc("VirtualService", "  hosts: [r]\n  http:\n  - match: [{uri: {regex: '(unclosed'}}]\n" + ROUTE),
        "spec.http[0].match[0].uri.regex",
        "invalid regex",
    ),
    (
        "DestinationRule",
        _doc("DestinationRule", "  subsets: [{name: v1}]\n"),
        "spec.host",
        "host is required",
    ),
    (
        "DestinationRule",
        _doc("DestinationRule", "  host: r\n  subsets: [{name: v1}, {name: v1}]\n"),
        "spec.subsets[1].name",
        "duplicate subset",
    ),
    (
        "DestinationRule",
        _doc("DestinationRule", "  host: r\n  subsets: [{labels: {a: b}}]\n"),
        "spec.subsets[0].name",
        "subset name is required",
    ),
    (
        "Gateway",
        _doc("Gateway", "  servers: [{port: {number: 80, name: http, protocol: HTTP}}]\n"),
        "spec.servers[0].hosts",
        "at least one host",
    ),
    ("Gateway", _doc("Gateway", "  servers: [{hosts: ['*']}]\n"), "spec.servers[0].port", "port is required"),
    (
        "Gateway",
        _doc(
            "Gateway",
            "  servers: [{hosts: ['*'], port: {number: 443, name: h, protocol: HTTPS}, tls: {mode: BOGUS}}]\n",
        ),
        "spec.servers[0].tls.mode",
        "must be one of",
    ),
    (
        "ServiceEntry",
        _doc("ServiceEntry", "  ports: [{number: 80, name: http, protocol: HTTP}]\n"),
        "spec.hosts",
        "at least one host",
    ),
    (
        "ServiceEntry",
        _doc("ServiceEntry", "  hosts: [a.com]\n  resolution: DNS\n"),
        "spec.ports",
        "unless resolution is NONE",
    ),
    (
        "ServiceEntry",
        _doc(
            "ServiceEntry",
            "  hosts: [a.com]\n  resolution: STATIC\n"
            "  ports: [{number: 80, name: http}]\n  endpoints: [{address: a.com}]\n",
        ),
        "spec.endpoints[0].address",
        "STATIC resolution needs IP",
    ),
    ("WorkloadEntry", _doc("WorkloadEntry", "  labels: {app: a}\n"), "spec.address", "address is required"),
    (
        "Sidecar",
        _doc("Sidecar", "  egress: [{hosts: [foo.com]}]\n"),
        "spec.egress[0].hosts[0]",
        "namespace/dnsName",
    ),
    (
        "PeerAuthentication",
        _doc("PeerAuthentication", "  mtls: {mode: STRICTER}\n", SEC),
        "spec.mtls.mode",
        "must be one of",
    ),
    (
        "PeerAuthentication",
        _doc("PeerAuthentication", "  portLevelMtls: {8080: {mode: DISABLE}}\n", SEC),
        "spec.portLevelMtls",
        "needs a workload selector",
    ),
    (
        "AuthorizationPolicy",
        _doc("AuthorizationPolicy", "  rules: [{when: [{key: 'request.auth.claims[iss]'}]}]\n", SEC),
        "spec.rules[0].when[0]",
        "values or notValues",
    ),
    (
        "AuthorizationPolicy",
        _doc("AuthorizationPolicy", "  action: CUSTOM\n  rules: [{}]\n", SEC),
        "spec.provider.name",
        "provider name",
    ),
    (
        "RequestAuthentication",
        _doc("RequestAuthentication", "  jwtRules: [{jwksUri: 'https://x/jwks'}]\n", SEC),
        "spec.jwtRules[0].issuer",
        "issuer is required",
    ),
]


@pytest.mark.parametrize(("kind", "text", "field", "message"), CASES, ids=lambda v: str(v)[:30])
def test_invalid_resource_produces_exactly_one_error(kind: str, text: str, field: str, message: str) -> None:
    result = load_text(text, "v.yaml")
    assert result.configs == []
    assert len(result.errors) == 1, [str(e) for e in result.errors]
    err = result.errors[0]
    assert (err.source, err.kind, err.namespace, err.name, err.field) == ("v.yaml", kind, "ns", "x", field)
    assert message in err.message, err.message


VALID = [
    _doc("VirtualService", "  http:\n  - route: [{destination: {host: r}}]\n"),  # a delegate
    _doc("ServiceEntry", "  hosts: [a.com]\n  location: MESH_EXTERNAL\n  resolution: NONE\n"),
    _doc(
        "ServiceEntry",
        "  hosts: [a.com]\n  resolution: DNS\n  ports: [{number: 443, name: https, protocol: TLS}]\n"
        "  endpoints: [{address: b.com}]\n",
    ),
    _doc("WorkloadEntry", "  address: 10.0.0.1\n  ports: {http: 8080}\n  serviceAccount: sa\n"),
    _doc(
        "Sidecar",
        "  egress: [{hosts: ['./*', 'istio-system/*']}]\n  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n",
    ),
    _doc(
        "PeerAuthentication",
        "  selector: {matchLabels: {app: a}}\n  mtls: {mode: STRICT}\n  portLevelMtls: {8080: {mode: DISABLE}}\n",
        SEC,
    ),
    _doc(
        "AuthorizationPolicy",
        "  action: DENY\n  rules: [{from: [{source: {notNamespaces: [foo]}}],"
        " to: [{operation: {methods: [GET], ports: ['8080']}}]}]\n",
        SEC,
    ),
    _doc(
        "RequestAuthentication",
        "  jwtRules: [{issuer: a, jwksUri: 'https://x/jwks', fromHeaders: [{name: x}]}]\n",
        SEC,
    ),
    _doc(
        "EnvoyFilter",
        "  configPatches:\n  - applyTo: HTTP_FILTER\n    match: {context: SIDECAR_INBOUND}\n"
        "    patch: {operation: INSERT_BEFORE, value: {name: envoy.lua, typed_config: {a: 1}}}\n",
        "networking.istio.io/v1alpha3",
    ),
    _doc(
        "DestinationRule",
        "  host: r\n  trafficPolicy:\n    loadBalancer: {consistentHash: {httpCookie: {name: c,"
        " ttl: 0s}}}\n    outlierDetection: {consecutive5xxErrors: 7, interval: 5m}\n",
    ),
]


@pytest.mark.parametrize("text", VALID, ids=lambda v: v.split("kind: ")[1].split("\n")[0])
def test_valid_resources_load(text: str) -> None:
    result = load_text(text, "ok.yaml")
    assert [str(e) for e in result.errors] == []
    assert len(result.configs) == 1
