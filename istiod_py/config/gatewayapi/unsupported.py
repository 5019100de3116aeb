"""Gateway API fields istiod_py rejects, with the exact messages (docs/field-support.md quotes them)."""

from __future__ import annotations

NOT_YET = "not supported by istiod_py yet"

MSG_EXTERNAL_AUTH = f"the ExternalAuth filter is {NOT_YET}; use an Istio AuthorizationPolicy with a CUSTOM provider"
MSG_EXTENSION_REF = "ExtensionRef filters are implementation-specific and istiod_py defines none; remove the filter"
MSG_BACKEND_FILTER = (
    f"filters other than RequestHeaderModifier and ResponseHeaderModifier on a backendRef are {NOT_YET} "
    "(Istio neither); move the filter to the rule"
)
MSG_SESSION_PERSISTENCE = f"{NOT_YET} (Istio neither); use a DestinationRule consistentHash for affinity"
MSG_DEFAULT_GATEWAYS = f"{NOT_YET} (default Gateways); list the Gateway in parentRefs"
MSG_ALLOWED_LISTENERS = f"{NOT_YET} (ListenerSets); put the listeners on the Gateway"
MSG_GATEWAY_TLS = f"{NOT_YET} (Gateway-level frontend/backend TLS); remove it"
MSG_INFRASTRUCTURE = (
    "has no effect in file mode (istiod_py deploys no gateway pods); label the router proxy "
    "gateway.networking.k8s.io/gateway-name=<gateway name> instead — remove it"
)

FILTER_REJECTED: dict[str, str] = {
    "ExternalAuth": MSG_EXTERNAL_AUTH,
    "ExtensionRef": MSG_EXTENSION_REF,
}

# GatewaySpec field (proto name) -> message
GATEWAY_REJECTED: dict[str, str] = {
    "allowed_listeners": MSG_ALLOWED_LISTENERS,
    "tls": MSG_GATEWAY_TLS,
    "infrastructure": MSG_INFRASTRUCTURE,
    "default_scope": MSG_DEFAULT_GATEWAYS,
}
