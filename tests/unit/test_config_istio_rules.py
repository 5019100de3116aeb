"""Istio's own validation rules at load time: what istiod (and Envoy) refuse,
istiod_py refuses, on the field's path; and what they accept still loads."""

from __future__ import annotations

import pytest

from istiod_py.config.loader import load_text


def doc(kind: str, spec: str, group: str = "networking.istio.io/v1") -> str:
    return f"apiVersion: {group}\nkind: {kind}\nmetadata: {{name: x, namespace: ns}}\nspec:\n{spec}"


VS = "  hosts: [r]\n  http:\n  - route: [{destination: {host: r}}]\n"
ROUTE = "    route: [{destination: {host: r}}]\n"
SE = "  hosts: [a.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n"

# (kind, spec, field path, words in the message)
# fmt: off
INVALID = [
    # regexes: RE2 as Envoy compiles them
    ("VirtualService", "  hosts: [r]\n  http:\n  - match: [{uri: {regex: '(?=a)b'}}]\n" + ROUTE,
     "spec.http[0].match[0].uri.regex", "RE2"),
    ("VirtualService", "  hosts: [r]\n  http:\n  - match: [{headers: {x: {regex: '(a)\\1'}}}]\n" + ROUTE,
     "spec.http[0].match[0].headers[x].regex", "RE2"),
    ("VirtualService", "  hosts: [r]\n  http:\n  - match: [{uri: {regex: 'a{1001}'}}]\n" + ROUTE,
     "spec.http[0].match[0].uri.regex", "invalid regex"),
    # addresses and CIDRs
    ("VirtualService", "  hosts: [r]\n  tcp: [{match: [{destinationSubnets: [10.0.0.0/33]}], route: [{destination: {host: r}}]}]\n",  # noqa: E501
     "spec.tcp[0].match[0].destinationSubnets[0]", "CIDR"),
    ("ServiceEntry", SE + "  addresses: [not-an-ip]\n  resolution: STATIC\n  endpoints: [{address: 10.0.0.1}]\n",
     "spec.addresses[0]", "not an IP"),
    ("ServiceEntry", SE + "  addresses: [300.1.1.1/8]\n  resolution: STATIC\n  endpoints: [{address: 10.0.0.1}]\n",
     "spec.addresses[0]", "CIDR"),
    ("ServiceEntry", SE + "  addresses: [10.0.0.0/8]\n  resolution: DNS\n",
     "spec.addresses[0]", "NONE or STATIC"),
    ("Sidecar", "  ingress: [{port: {number: 80, protocol: HTTP, name: http}, bind: 1.2.3, defaultEndpoint: '127.0.0.1:8080'}]\n",  # noqa: E501
     "spec.ingress[0].bind", "not an IP"),
    ("Sidecar", "  ingress: [{port: {number: 80, protocol: HTTP, name: http}, defaultEndpoint: '127.0.0.1:99999'}]\n",
     "spec.ingress[0].defaultEndpoint", "1-65535"),
    # durations: at least 1ms, whole milliseconds
    ("VirtualService", "  hosts: [r]\n  http:\n  - timeout: 0.5ms\n" + ROUTE, "spec.http[0].timeout", "1ms"),
    ("VirtualService", "  hosts: [r]\n  http:\n  - retries: {attempts: 2, perTryTimeout: 1500us}\n" + ROUTE,
     "spec.http[0].retries.perTryTimeout", "ms precision"),
    ("DestinationRule", "  host: r\n  trafficPolicy: {connectionPool: {tcp: {connectTimeout: 0s}}}\n",
     "spec.trafficPolicy.connectionPool.tcp.connectTimeout", "1ms"),
    ("DestinationRule", "  host: r\n  trafficPolicy: {outlierDetection: {interval: 100us}}\n",
     "spec.trafficPolicy.outlierDetection.interval", "1ms"),
    # retries
    ("VirtualService", "  hosts: [r]\n  http:\n  - retries: {attempts: 0, retryOn: 5xx}\n" + ROUTE,
     "spec.http[0].retries.attempts", "attempts is 0"),
    ("VirtualService", "  hosts: [r]\n  http:\n  - retries: {attempts: 3, retryOn: '5xx,sometimes'}\n" + ROUTE,
     "spec.http[0].retries.retryOn", "'sometimes'"),
    # hosts, subsets, names
    ("VirtualService", "  hosts: ['*']\n  http:\n" + "  -" + ROUTE[3:], "spec.hosts[0]", "bound to gateways"),
    ("VirtualService", "  hosts: [Bad_Host]\n  http:\n" + "  -" + ROUTE[3:], "spec.hosts[0]", "invalid host"),
    ("VirtualService", "  hosts: [r]\n  http:\n  - route: [{destination: {host: r, subset: V_1}}]\n",
     "spec.http[0].route[0].destination.subset", "DNS-1123"),
    ("DestinationRule", "  host: r\n  subsets: [{name: Version_1}]\n", "spec.subsets[0].name", "DNS-1123"),
    ("DestinationRule", "  host: 'foo.*.com'\n", "spec.host", "invalid host"),
    ("ServiceEntry", "  hosts: ['*']\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: NONE\n",
     "spec.hosts[0]", "not a valid"),
    # redirects, rewrites, CORS
    ("VirtualService", "  hosts: [r]\n  http:\n  - redirect: {uri: /x, redirectCode: 200}\n",
     "spec.http[0].redirect.redirectCode", "3xx"),
    ("VirtualService", "  hosts: [r]\n  http:\n  - redirect: {}\n", "spec.http[0].redirect", "must specify"),
    ("VirtualService", "  hosts: [r]\n  http:\n  - rewrite: {uri: /a, uriRegexRewrite: {match: a, rewrite: b}}\n" + ROUTE,  # noqa: E501
     "spec.http[0].rewrite", "only one"),
    ("VirtualService", "  hosts: [r]\n  http:\n  - corsPolicy: {allowMethods: [FETCH]}\n" + ROUTE,
     "spec.http[0].corsPolicy.allowMethods[0]", "HTTP method"),
    ("VirtualService", "  hosts: [r]\n  http:\n  - fault: {abort: {httpStatus: 503, percentage: {value: 0.00001}}}\n" + ROUTE,  # noqa: E501
     "spec.http[0].fault.abort.percentage.value", "0.0001"),
    ("VirtualService", "  hosts: [r]\n  http:\n  - headers: {response: {set: {host: h}}}\n" + ROUTE,
     "spec.http[0].headers.response.set[host]", "Host"),
    # DestinationRule
    ("DestinationRule", "  host: r\n  trafficPolicy: {}\n", "spec.trafficPolicy", "at least one field"),
    ("DestinationRule", "  host: r\n  trafficPolicy: {connectionPool: {}}\n",
     "spec.trafficPolicy.connectionPool", "tcp or http"),
    ("DestinationRule", "  host: r\n  trafficPolicy: {connectionPool: {tcp: {maxConnections: -1}}}\n",
     "spec.trafficPolicy.connectionPool.tcp.maxConnections", "negative"),
    ("DestinationRule",
     "  host: r\n  trafficPolicy: {connectionPool: {http: {h2UpgradePolicy: UPGRADE, useClientProtocol: true}}}\n",
     "spec.trafficPolicy.connectionPool.http.useClientProtocol", "UPGRADE"),
    ("DestinationRule", "  host: r\n  trafficPolicy: {loadBalancer: {consistentHash: {maglev: {tableSize: 1000}}}}\n",
     "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize", "prime"),
    ("DestinationRule", "  host: r\n  trafficPolicy: {loadBalancer: {consistentHash: {httpCookie: {ttl: 1s}}}}\n",
     "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name", "required"),
    ("DestinationRule", "  host: r\n  trafficPolicy: {outlierDetection: {consecutiveLocalOriginFailures: 3}}\n",
     "spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures", "splitExternalLocalOriginErrors"),
    ("DestinationRule", "  host: r\n  exportTo: ['*', ns2]\n", "spec.exportTo", "cannot be combined"),
    # ServiceEntry resolution and endpoints
    ("ServiceEntry", "  hosts: ['*.example.com']\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS\n",  # noqa: E501
     "spec.hosts[0]", "FQDN"),
    ("ServiceEntry", SE + "  resolution: DNS\n  endpoints: [{address: 'bad address!'}]\n",
     "spec.endpoints[0].address", "host name"),
    ("ServiceEntry", SE + "  resolution: STATIC\n  endpoints: [{address: 10.0.0.1, ports: {grpc: 90}}]\n",
     "spec.endpoints[0].ports[grpc]", "not defined"),
    ("ServiceEntry", "  hosts: [a.example.com, b.example.com]\n  ports: [{number: 90, name: tcp, protocol: TCP}]\n"
     "  resolution: DNS\n", "spec.ports[0].protocol", "several hosts"),
    ("ServiceEntry", "  hosts: [a.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP},"
     " {number: 80, name: http2, protocol: HTTP}]\n  resolution: DNS\n", "spec.ports[1].number", "twice"),
    # Sidecar
    ("Sidecar", "  workloadSelector: {labels: {app: a}}\n", "spec", "empty Sidecar"),
    ("Sidecar", "  egress: [{hosts: ['./*']}, {port: {number: 80, protocol: HTTP, name: http}, hosts: ['./*']}]\n",
     "spec.egress[0]", "must be the last"),
    ("Sidecar", "  egress: [{port: {number: 80, protocol: HTTP, name: http}, hosts: ['./*']},"
     " {port: {number: 80, protocol: HTTP, name: http2}, hosts: ['./*']}]\n", "spec.egress[1].port.number", "unique"),
    ("Sidecar", "  egress: [{hosts: ['Bad_NS/*']}]\n", "spec.egress[0].hosts[0]", "namespace"),
    # Gateway
    ("Gateway", "  servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'],"
     " tls: {mode: SIMPLE, serverCertificate: /c.pem}}]\n", "spec.servers[0].tls.privateKey", "private key"),
    ("Gateway", "  servers: [{port: {number: 80, protocol: HTTP}, hosts: ['*']}]\n",
     "spec.servers[0].port.name", "required"),
    # RequestAuthentication
    ("RequestAuthentication", "  jwtRules: [{issuer: i, audiences: ['']}]\n", "spec.jwtRules[0].audiences[0]", "empty"),
]
# fmt: on


@pytest.mark.parametrize(("kind", "spec", "path", "words"), INVALID, ids=[f"{i[0]}:{i[2]}" for i in INVALID])
def test_istio_rule_rejects(kind: str, spec: str, path: str, words: str) -> None:
    group = "security.istio.io/v1" if kind == "RequestAuthentication" else "networking.istio.io/v1"
    result = load_text(doc(kind, spec, group), "f.yaml")
    assert not result.configs, f"{kind} loaded although istiod rejects it"
    found = [e for e in result.errors if e.field == path]
    assert found, [str(e) for e in result.errors]
    assert any(words in e.message for e in found), [str(e) for e in found]


VALID = [
    ("VirtualService", "  hosts: [r]\n  http:\n  - match: [{uri: {regex: '/api/[0-9]+'}}]\n" + ROUTE),
    ("VirtualService", "  hosts: ['*.example.com', 10.1.2.3]\n  http:\n  - timeout: 1ms\n" + ROUTE),
    ("VirtualService", "  hosts: ['*']\n  gateways: [ns/gw]\n  http:\n  -" + ROUTE[3:]),
    ("VirtualService", "  hosts: [r]\n  http:\n  - retries: {attempts: 3, perTryTimeout: 2s, retryOn: '5xx,503'}\n" + ROUTE),  # noqa: E501
    ("VirtualService", "  hosts: [r]\n  tcp: [{match: [{destinationSubnets: [10.0.0.0/8, '::1']}], route: [{destination: {host: r}}]}]\n"),  # noqa: E501
    ("ServiceEntry", SE + "  addresses: [10.0.0.0/16, 2001:db8::/32]\n  resolution: STATIC\n  endpoints: [{address: 10.0.0.1, ports: {http: 8080}}]\n"),  # noqa: E501
    ("ServiceEntry", "  hosts: ['*.example.com']\n  ports: [{number: 443, name: tls, protocol: TLS}]\n  resolution: NONE\n"),  # noqa: E501
    ("DestinationRule", "  host: '*.example.com'\n  subsets: [{name: v1-canary}]\n"),
    ("DestinationRule", "  host: r\n  trafficPolicy: {loadBalancer: {consistentHash: {maglev: {tableSize: 65537}}}}\n"),
    ("Sidecar", "  egress: [{port: {number: 80, protocol: HTTP, name: http}, hosts: ['./*']}, {hosts: ['istio-system/*']}]\n"),  # noqa: E501
    ("Sidecar", "  ingress: [{port: {number: 80, protocol: HTTP, name: http}, defaultEndpoint: '127.0.0.12:8080'}]\n"),
]


@pytest.mark.parametrize(("kind", "spec"), VALID, ids=[f"{v[0]}-{i}" for i, v in enumerate(VALID)])
def test_what_istiod_accepts_still_loads(kind: str, spec: str) -> None:
    result = load_text(doc(kind, spec), "f.yaml")
    assert not result.errors, [str(e) for e in result.errors]
    assert len(result.configs) == 1
