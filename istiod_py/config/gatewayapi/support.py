"""The Gateway API field and conformance-feature support table.

`python -m istiod_py.config.gatewayapi.support > docs/field-support-gateway-api.md`
regenerates the doc; tests/unit/test_gatewayapi_support.py checks it is current and
lists every field of protos/gateway_api.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from . import unsupported as U
from .kinds import KINDS

G = "config/gatewayapi/"
GW, RT, PA, RF, HR = f"{G}gateways.py", f"{G}httproutes.py", f"{G}parents.py", f"{G}refs.py", f"{G}convert.py"
NO_EFFECT = "accepted, no effect in file mode"

# "Message.field" -> (status, note). Unlisted fields are supported by the module named in _MODULES.
TABLE: dict[str, tuple[str, str]] = {
    "GatewayClassSpec.parametersRef": (NO_EFFECT, "istiod_py has no GatewayClass parameters"),
    "GatewayClassSpec.description": (NO_EFFECT, ""),
    "GatewaySpec.addresses": (NO_EFFECT, "the router proxy is chosen by label, not by address"),
    "GatewaySpec.infrastructure": ("rejected", U.MSG_INFRASTRUCTURE),
    "GatewaySpec.allowedListeners": ("rejected", U.MSG_ALLOWED_LISTENERS),
    "GatewaySpec.tls": ("rejected", U.MSG_GATEWAY_TLS),
    "GatewaySpec.defaultScope": ("rejected", U.MSG_DEFAULT_GATEWAYS),
    "ListenerTLSConfig.certificateRefs": (
        "partial",
        "converted to credentialName kubernetes-gateway://NS/NAME as istiod does, with ReferenceGrant checks; "
        "istiod_py serves no Kubernetes Secrets yet, so the listener reports Programmed=False (Invalid): "
        "use the certificate-file options instead",
    ),
    "ListenerTLSConfig.options": (
        "supported",
        "istiod-py.io/server-certificate, istiod-py.io/private-key, istiod-py.io/ca-certificates: certificate files "
        "on the gateway's host (as an Istio Gateway's serverCertificate/privateKey/caCertificates); "
        "gateway.istio.io/tls-terminate-mode: MUTUAL (as istiod); other keys have no effect",
    ),
    "RouteNamespaces.selector": ("partial", "file mode knows namespaces by name only (kubernetes.io/metadata.name)"),
    "HTTPRouteSpec.useDefaultGateways": ("rejected", U.MSG_DEFAULT_GATEWAYS),
    "GRPCRouteSpec.useDefaultGateways": ("rejected", U.MSG_DEFAULT_GATEWAYS),
    "TCPRouteSpec.useDefaultGateways": ("rejected", U.MSG_DEFAULT_GATEWAYS),
    "TLSRouteSpec.useDefaultGateways": ("rejected", U.MSG_DEFAULT_GATEWAYS),
    "HTTPRouteRule.sessionPersistence": ("rejected", U.MSG_SESSION_PERSISTENCE),
    "GRPCRouteRule.sessionPersistence": ("rejected", U.MSG_SESSION_PERSISTENCE),
    "HTTPRouteFilter.externalAuth": ("rejected", U.MSG_EXTERNAL_AUTH),
    "HTTPRouteFilter.extensionRef": ("rejected", U.MSG_EXTENSION_REF),
    "GRPCRouteFilter.extensionRef": ("rejected", U.MSG_EXTENSION_REF),
    "HTTPBackendRef.filters": ("partial", f"header modifiers only; others are rejected: {U.MSG_BACKEND_FILTER}"),
    "GRPCBackendRef.filters": ("partial", f"header modifiers only; others are rejected: {U.MSG_BACKEND_FILTER}"),
    "HTTPRouteRule.backendRefs": (
        "supported",
        "an invalid backend (not found, not permitted, unsupported kind) is dropped, its weight share answers 500 "
        "and the route's ResolvedRefs is False; all weights 0: 503",
    ),
    "HTTPRouteTimeouts.backendRequest": ("supported", "the route timeout when set (as istiod), else request"),
}
_MODULES = {
    "GatewayClassSpec": GW,
    "GatewaySpec": GW,
    "HTTPRouteSpec": HR,
    "GRPCRouteSpec": HR,
    "TCPRouteSpec": HR,
    "TLSRouteSpec": HR,
    "ReferenceGrantSpec": RF,
}

# Conformance features (gateway-api pkg/features) -> (status, note)
FEATURES: list[tuple[str, str, str]] = [
    ("SupportGateway", "supported", "HTTP, HTTPS (certificate files as options; see certificateRefs), TLS, TCP"),
    ("SupportGatewayPort8080", "supported", "tests/e2e/test_gateway_api.py"),
    ("SupportGatewayHTTPListenerIsolation", "supported", "listener hostnames become server hosts"),
    ("SupportReferenceGrant", "supported", "Services (routes) and Secrets (Gateways)"),
    ("SupportHTTPRoute", "supported", ""),
    ("SupportHTTPRouteQueryParamMatching", "supported", ""),
    ("SupportHTTPRouteMethodMatching", "supported", ""),
    ("SupportHTTPRouteResponseHeaderModification", "supported", ""),
    ("SupportHTTPRoutePortRedirect", "supported", ""),
    ("SupportHTTPRouteSchemeRedirect", "supported", ""),
    ("SupportHTTPRoutePathRedirect", "supported", "ReplaceFullPath, and ReplacePrefixMatch (Envoy prefix_rewrite)"),
    ("SupportHTTPRouteHostRewrite", "supported", ""),
    (
        "SupportHTTPRoutePathRewrite",
        "supported",
        "ReplacePrefixMatch on whole path segments, as PathPrefix matches",
    ),
    ("SupportHTTPRouteRequestMirror", "supported", ""),
    ("SupportHTTPRouteRequestMultipleMirrors", "supported", ""),
    ("SupportHTTPRouteRequestPercentageMirror", "supported", ""),
    ("SupportHTTPRouteRequestTimeout", "supported", ""),
    ("SupportHTTPRouteBackendTimeout", "supported", "as istiod: the route timeout"),
    ("SupportHTTPRouteBackendRequestHeaderModification", "supported", ""),
    ("SupportHTTPRouteCORS", "supported", ""),
    ("SupportHTTPRouteRetry", "supported", ""),
    ("SupportHTTPRouteParentRefPort", "supported", ""),
    ("SupportHTTPRouteNamedRouteRule", "supported", "the rule name names the Istio route"),
    ("SupportGRPCRoute", "supported", ""),
    ("SupportTLSRoute", "supported", "Passthrough listeners, by SNI"),
    ("SupportTCPRoute", "supported", ""),
    ("SupportMesh", "supported", "GAMMA: HTTPRoute/GRPCRoute with a Service parentRef"),
    ("SupportMeshClusterIPMatching", "supported", "routes for the Service host; the sidecar matches its bind address"),
    (
        "SupportMeshConsumerRoute",
        "supported",
        "a route in the caller's namespace for a Service elsewhere: exported to that namespace only, and first there",
    ),
    ("SupportHTTPRouteSessionPersistence", "rejected", U.MSG_SESSION_PERSISTENCE),
    ("SupportGatewayInfrastructurePropagation", "rejected", U.MSG_INFRASTRUCTURE),
    ("SupportGatewayStaticAddresses", "no effect", "addresses are accepted and not used"),
    ("SupportUDPRoute", "rejected", "UDPRoute is not a kind istiod_py reads"),
]


def _fields(desc: Any, prefix: str, seen: frozenset[str]) -> Iterator[tuple[str, str, str]]:
    for f in desc.fields:
        path = f"{prefix}.{f.json_name}"
        key = f"{desc.name}.{f.json_name}"
        sub = f.message_type
        is_map = sub is not None and sub.GetOptions().map_entry
        if f.is_repeated and not is_map:
            path += "[]"
        elif is_map:
            path += "{}"
        yield path, key, desc.full_name
        if sub is not None and not is_map and sub.full_name not in seen:
            yield from _fields(sub, path, seen | {sub.full_name})


def rows(kind: str) -> list[tuple[str, str, str]]:
    info = KINDS[kind]
    module = _MODULES[info.message.DESCRIPTOR.name]
    out = []
    inherited: dict[str, tuple[str, str]] = {}
    for path, key, _ in _fields(info.message.DESCRIPTOR, "spec", frozenset()):
        status, note = TABLE.get(key, ("", ""))
        parent = next(
            (inherited[p] for p in sorted(inherited, key=len, reverse=True) if path.startswith(p + ".")), None
        )
        if not status and parent is not None:
            status, note = parent[0], "(see parent)"
        if status in ("rejected", NO_EFFECT):
            inherited[path] = (status, note)
        out.append((path, status or "supported", note if status else module))
    return out


def render_doc() -> str:
    lines = [
        "# Kubernetes Gateway API support in istiod_py",
        "",
        "Generated by `python -m istiod_py.config.gatewayapi.support > docs/field-support-gateway-api.md`;",
        "`tests/unit/test_gatewayapi_support.py` checks it is current.",
        "",
        "Gateway API resources (gateway.networking.k8s.io, v1.6.1: GatewayClass, Gateway, HTTPRoute, GRPCRoute,",
        "ReferenceGrant; experimental TCPRoute, TLSRoute) are parsed strictly (unknown field: error naming file,",
        "resource and field) and converted to Istio Gateways and VirtualServices as istiod converts them",
        "(`istiod_py/config/gatewayapi/`). **rejected** fields fail loading with the message shown. Status",
        "conditions (Accepted, Programmed, ResolvedRefs, Conflicted) are in `/debug/configz` (`gatewayApiStatus`)",
        "and printed by `istiod-py analyze`.",
        "",
        "## Conformance features",
        "",
        "| feature | status | note |",
        "|---|---|---|",
    ]
    lines += [f"| `{n}` | {s} | {note} |" for n, s, note in FEATURES]
    for kind in KINDS:
        lines += ["", f"## {kind}", "", "| field | status | note |", "|---|---|---|"]
        lines += [f"| `{p}` | {s} | {n} |" for p, s, n in rows(kind)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_doc(), end="")
