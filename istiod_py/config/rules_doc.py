"""Which of Istio's validation rules (istio/istio pkg/config/validation) istiod_py
enforces at load time, per kind, and where it knowingly differs. Rendered into
docs/field-support.md by unsupported/walker.py; keep it in step with
validation.py, istio_rules.py and istio_rules_services.py."""

from __future__ import annotations

IMPLEMENTED: dict[str, tuple[str, ...]] = {
    "All kinds": (
        "regexes compile with RE2 (Envoy's engine): lookaround and backreferences are invalid; at most 1024 characters",
        "IP addresses and CIDRs parse strictly (`10.0.0.0/33`, `300.1.1.1/8`, `not-an-ip` are invalid)",
        "ports are 1-65535 where istiod requires a port",
        "durations are at least 1ms and whole milliseconds where istiod calls ValidateDuration",
        "exportTo: no duplicates (`.` counts as the own namespace), `*` and `~` alone, `~` only on ServiceEntry",
        "integers fit their proto field (int32, uint32, int64, uint64); floats are finite; durations at most 2562047h",
    ),
    "VirtualService": (
        "hosts: required unless a delegate; valid (wildcard) DNS-1123 names or IPs; `*` only when bound to gateways; "
        "no literal duplicates (istiod also catches overlapping wildcards)",
        "gateways: `mesh`, `name` (an FQDN) or `namespace/name` (DNS-1123 labels)",
        "a delegate has no gateways, tls or tcp routes, and cannot delegate again",
        "http routes: exactly one of route, redirect, directResponse, delegate; rewrite and fault not with redirect",
        "destinations: host required, not `*`; subset a DNS-1123 label; port 1-65535; weights 0-100, not all 0 "
        "with several destinations",
        "timeout, retries.perTryTimeout, fault.delay.fixedDelay, corsPolicy.maxAge: durations as above",
        "retries: attempts not negative; no retry settings with attempts 0; retryOn policies Envoy knows "
        "(or HTTP status codes)",
        "redirect: one of uri, authority, scheme, port; redirectCode 3xx; scheme http or https",
        "rewrite: uri or uriRegexRewrite, not both; at least one of them or authority; uriRegexRewrite needs "
        "match and rewrite",
        "fault: delay or abort; percentages 0 or 0.0001-100; httpStatus 200-599; grpcStatus a gRPC status name",
        "corsPolicy: allowOrigins non-empty matches; allowMethods HTTP methods; header names valid; maxAge "
        "whole seconds",
        "headers: names non-empty, no `:` prefix on set/add, Host not in responses; values without control characters",
        "match: header names `[-_A-Za-z0-9]+`; sourceNamespace a DNS-1123 label; port 1-65535",
        "mirror(s): destination valid; percentage 0-100",
        "directResponse: status 200-599; body under 1 MiB",
        "tls routes: at least one match with sniHosts (valid host names); destinationSubnets IP/CIDR",
        "tcp routes: a route destination; destinationSubnets IP/CIDR",
    ),
    "DestinationRule": (
        "host required, a valid (wildcard) DNS-1123 name",
        "subsets: name required, a DNS-1123 label, unique",
        "trafficPolicy (top, subset, port level): at least one field",
        "connectionPool: tcp or http set; counts not negative; durations as above; useClientProtocol not with "
        "h2UpgradePolicy UPGRADE",
        "outlierDetection: durations as above; maxEjectionPercent and minHealthPercent 0-100; "
        "consecutiveLocalOriginFailures needs splitExternalLocalOriginErrors",
        "loadBalancer: httpCookie.name required; minimumRingSize not with ringHash/maglev; maglev tableSize prime "
        "below 5000011; localityLbSetting distribute xor failover, distribute weights 1-100 adding to 100, "
        "failover from != to; warmupDurationSecs as above",
        "tls: MUTUAL needs credentialName or clientCertificate and privateKey; insecureSkipVerify with SIMPLE "
        "excludes caCertificates and subjectAltNames",
        "portLevelSettings: a port 1-65535",
    ),
    "Gateway": (
        "at least one server; each with a port (number 1-65535, protocol, name) and at least one host",
        "hosts: `namespace/host` or `host`, hosts valid (wildcard) DNS-1123 names",
        "bind: an IP address (or unix://)",
        "HTTPS/TLS servers need tls; SIMPLE/MUTUAL need serverCertificate and privateKey (or credentialName); "
        "MUTUAL needs caCertificates; caCrl not with SIMPLE",
    ),
    "ServiceEntry": (
        "hosts required, not `*`, valid (wildcard) DNS-1123 names; FQDNs with DNS resolution and no endpoints",
        "addresses: IPs or CIDRs; CIDRs only with resolution NONE or STATIC",
        "ports: number 1-65535, unique numbers and names, names DNS-1123 labels, targetPort 1-65535; required "
        "unless resolution NONE",
        "endpoints: not with resolution NONE; IPs (or unix://) with STATIC; IPs or host names with DNS; "
        "at most one with DNS_ROUND_ROBIN; endpoint ports name ports of the entry; not with workloadSelector",
        "several hosts need HTTP or TLS ports unless resolution is NONE",
    ),
    "WorkloadEntry": (
        "address required (unless network); an IP, host name or unix:// path; a unix:// address has no ports",
        "ports: names DNS-1123 labels, numbers 1-65535",
    ),
    "Sidecar": (
        "not empty: egress, ingress, outboundTrafficPolicy or inboundConnectionPool",
        "ingress: a port (1-65535), ports unique, bind an IP, defaultEndpoint IP:port or unix:///path",
        "egress: hosts required, each `namespace/host` with valid parts; ports unique; the listener without a "
        "port only last; port 0 only with a unix:// bind; bind an IP",
    ),
    "PeerAuthentication": ("portLevelMtls needs a selector; ports 1-65535",),
    "AuthorizationPolicy": (
        "selector and targetRef(s) not together; CUSTOM needs provider.name; provider only with CUSTOM",
        "from.source and to.operation set at least one field; ports 1-65535; when: key and values or notValues",
    ),
    "RequestAuthentication": (
        "selector and targetRef(s) not together",
        "jwtRules: issuer required and unique; jwksUri http(s); audiences, fromParams, fromCookies non-empty; "
        "fromHeaders names; outputClaimToHeaders claim and a valid header name; timeout as above",
    ),
    "EnvoyFilter": ("configPatches: applyTo and patch.operation required",),
}

# Istio rules istiod_py does not enforce, and why.
NOT_ENFORCED: tuple[str, ...] = (
    "AuthorizationPolicy DENY/CUSTOM without rules: current istiod rejects it; istiod_py loads it as a no-op "
    "(tests/unit/test_rbac.py relies on it)",
    "Gateway port names unique across servers: existing configs in tests reuse names",
    "regex matches in delegate routes: istiod rejects them; istiod_py drops the conflicting route with a warning "
    "(tests/unit/test_delegate.py)",
    "`:`-prefixed names in request headers.remove: accepted and ignored (Envoy cannot remove pseudo-headers)",
    "HTTPRouteDestination.weight over 100: istiod accepts it; istiod_py rejects it (stricter)",
    "Sidecar port targetPort: istiod rejects it on ingress; istiod_py implements it (see the table)",
    "label syntax of selectors and subsets, header value `%` escapes, cipher suite names, JWKS parsing, "
    "AuthorizationPolicy attribute values: not checked yet",
)


def render() -> list[str]:
    lines = [
        "## Istio validation rules enforced at load time",
        "",
        "From istio/istio `pkg/config/validation` (`istiod_py/config/rules_doc.py`; implemented in",
        "`validation.py`, `istio_rules.py`, `istio_rules_services.py`, `rules.py`, `proto_yaml.py`).",
        "",
    ]
    for kind, rules in IMPLEMENTED.items():
        lines.append(f"### {kind}")
        lines.append("")
        lines += [f"- {rule}" for rule in rules]
        lines.append("")
    lines += ["### Not enforced (deliberately or yet)", ""]
    lines += [f"- {rule}" for rule in NOT_ENFORCED]
    lines.append("")
    return lines
