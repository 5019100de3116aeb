"""The analysis messages istiod_py reports: Istio's code, name, level and template
(pkg/config/analysis/msg/messages.yaml), and `Message`, one finding on one resource.

Printed as istioctl prints it:
`Error [IST0101] (VirtualService default/reviews FILE) Referenced host not found: "ratings"`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LEVELS = ("Error", "Warning", "Info")  # most severe first, as istioctl sorts them


@dataclass(frozen=True)
class MessageType:
    code: str
    name: str
    level: str
    template: str


def _t(code: str, name: str, level: str, template: str) -> tuple[str, MessageType]:
    return code, MessageType(code, name, level, template)


TYPES: dict[str, MessageType] = dict(
    [
        _t("IST0101", "ReferencedResourceNotFound", "Error", 'Referenced {} not found: "{}"'),
        # Retired in Istio 1.13 (IST0162 GatewayPortNotDefinedOnService took its place); kept with its last template.
        _t("IST0104", "GatewayPortNotOnWorkload", "Warning",
           "The gateway refers to a port that is not exposed on the workload (pod selector {}; port {})"),
        _t("IST0106", "SchemaValidationError", "Error", "Schema validation error: {}"),
        _t("IST0108", "UnknownAnnotation", "Warning", "Unknown annotation: {}"),
        _t("IST0109", "ConflictingMeshGatewayVirtualServiceHosts", "Error",
           "The VirtualServices {} associated with mesh gateway define the same host {} which can lead to undefined "
           "behavior. This can be fixed by merging the conflicting VirtualServices into a single resource."),
        _t("IST0110", "ConflictingSidecarWorkloadSelectors", "Error",
           'The Sidecars {} in namespace "{}" select the same workload pod "{}", '
           "which can lead to undefined behavior."),
        _t("IST0111", "MultipleSidecarsWithoutWorkloadSelectors", "Error",
           'The Sidecars {} in namespace "{}" have no workload selector, which can lead to undefined behavior.'),
        _t("IST0112", "VirtualServiceDestinationPortSelectorRequired", "Error",
           'This VirtualService routes to a service "{}" that exposes multiple ports {}. Specifying a port in the '
           "destination is required to disambiguate."),
        _t("IST0128", "NoServerCertificateVerificationDestinationLevel", "Warning",
           "DestinationRule {} in namespace {} has TLS mode set to {} but no caCertificates are set to validate "
           "server identity for host: {}"),
        _t("IST0129", "NoServerCertificateVerificationPortLevel", "Warning",
           "DestinationRule {} in namespace {} has TLS mode set to {} but no caCertificates are set to validate "
           "server identity for host: {} at port {}"),
        _t("IST0130", "VirtualServiceUnreachableRule", "Warning", "VirtualService rule {} not used ({})."),
        _t("IST0131", "VirtualServiceIneffectiveMatch", "Info",
           "VirtualService rule {} match {} is not used (duplicate/overlapping match in rule {})."),
        _t("IST0132", "VirtualServiceHostNotFoundInGateway", "Warning",
           "one or more host {} defined in VirtualService {} not found in Gateway {}."),
        _t("IST0134", "ServiceEntryAddressesRequired", "Warning",
           "ServiceEntry addresses are required for this protocol."),
        _t("IST0145", "ConflictingGateways", "Error",
           "Conflict with gateways {} (workload selector {}, port {}, hosts {})."),
        _t("IST0149", "JwtClaimBasedRoutingWithoutRequestAuthN", "Error",
           "The virtual service uses the JWT claim based routing (key: {}) but found no request authentication for "
           "the gateway ({}) pod ({}). The request authentication must first be applied for the gateway pods to "
           "validate the JWT token and make the claims available for routing."),
        _t("IST0151", "EnvoyFilterUsesRelativeOperation", "Warning",
           "This EnvoyFilter does not have a priority and has a relative patch operation set which can cause the "
           "EnvoyFilter not to be applied. Using the INSERT_FIRST of ADD option or setting the priority may help in "
           "ensuring the EnvoyFilter is applied correctly."),
        _t("IST0152", "EnvoyFilterUsesReplaceOperationIncorrectly", "Error",
           "The REPLACE operation is only valid for HTTP_FILTER and NETWORK_FILTER."),
        _t("IST0153", "EnvoyFilterUsesAddOperationIncorrectly", "Error",
           "The ADD operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or HTTP_ROUTE."),
        _t("IST0154", "EnvoyFilterUsesRemoveOperationIncorrectly", "Error",
           "The REMOVE operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or HTTP_ROUTE."),
        _t("IST0155", "EnvoyFilterUsesRelativeOperationWithProxyVersion", "Warning",
           "This EnvoyFilter does not have a priority and has a relative patch operation (NSTERT_BEFORE/AFTER, "
           "REPLACE, MERGE, DELETE) and proxyVersion set which can cause the EnvoyFilter not to be applied during an "
           "upgrade. Using the INSERT_FIRST or ADD option or setting the priority may help in ensuring the "
           "EnvoyFilter is applied correctly."),
        _t("IST0173", "DestinationRuleSubsetNotSelectPods", "Error",
           "The Subset {} defined in the DestinationRule does not select any pods. Which may lead to 503 UH "
           "(NoHealthyUpstream)."),
        _t("IST0174", "DestinationRuleHostNotFound", "Warning",
           "The host {} defined in the DestinationRule does not match any services in the mesh."),
        # Istio 1.30 release notes: a warning when ServiceEntries define the same host and port with
        # conflicting protocols. The name and template are istiod_py's (not found in the reference corpus).
        _t("IST0177", "ConflictingServiceEntryProtocols", "Warning",
           "The ServiceEntries {} define host {} port {} with conflicting protocols {}."),
    ]
)  # fmt: skip


@dataclass(frozen=True)
class Message:
    code: str
    level: str
    text: str
    kind: str
    namespace: str
    name: str
    source: str = ""
    field: str = ""

    @property
    def origin(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"

    def __str__(self) -> str:
        ref = f" {self.source}" if self.source else ""
        return f"{self.level} [{self.code}] ({self.origin}{ref}) {self.text}"

    def to_json(self) -> dict[str, Any]:
        """istioctl analyze -o json's fields for one message."""
        t = TYPES.get(self.code)
        out: dict[str, Any] = {
            "code": self.code,
            "level": self.level,
            "origin": self.origin,
            "reference": self.source,
            "message": self.text,
            "documentationUrl": f"https://istio.io/latest/docs/reference/config/analysis/{self.code.lower()}/",
        }
        if t is not None:
            out["name"] = t.name
        if self.field:
            out["field"] = self.field
        return out


def new(code: str, cfg: Any, *args: Any, field: str = "") -> Message:
    """A message of Istio type `code` about config `cfg` (a config.model.Config)."""
    t = TYPES[code]
    m = cfg.meta
    return Message(code, t.level, t.template.format(*args), m.kind, m.namespace, m.name, m.source, field)


def go_list(items: Any) -> str:
    """Go's %v of a []string: `[a b]`."""
    return "[" + " ".join(str(i) for i in items) + "]"
