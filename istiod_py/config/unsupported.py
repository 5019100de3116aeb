"""Which Istio fields istiod_py implements, and load-time rejection of the rest.

Every field of VirtualService, DestinationRule, Gateway, ServiceEntry and Sidecar
is either implemented by the translator (or the registry), or rejected when set
with a FieldProblem naming it, or (for the few fields that only name stats, and
fields Istio itself ignores) accepted with a warning from `analysis.analyze`.
Nothing is silently ignored.

`SUPPORT` is the table, keyed `Message.jsonName`; `PATH_SUPPORT` overrides it for
fields whose support depends on where the message is used (SidecarPort.targetPort
means something on ingress, nothing on egress). `check_unsupported(kind, spec)`
is what validation.py calls; `render_doc()` writes docs/field-support.md
(`python -m istiod_py.config.unsupported > docs/field-support.md`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from istio.networking.v1alpha3 import (
    destination_rule_pb2 as dr_pb,
)
from istio.networking.v1alpha3 import (
    gateway_pb2 as gw_pb,
)
from istio.networking.v1alpha3 import (
    service_entry_pb2 as se_pb,
)
from istio.networking.v1alpha3 import (
    sidecar_pb2 as sc_pb,
)
from istio.networking.v1alpha3 import (
    virtual_service_pb2 as vs_pb,
)

from istiod_py.config.proto_yaml import FieldProblem

Problems = list[FieldProblem]

NOT_YET = "not supported by istiod_py yet"

# --- the exact rejection messages (the doc quotes these) ------------------------------------

MSG_TUNNEL = f"{NOT_YET} (HTTP CONNECT tunneling to the destination); remove it"
MSG_PROXY_PROTOCOL = f"{NOT_YET} (sending the PROXY protocol header upstream); remove it"
MSG_DR_CREDENTIAL_NAME = (
    f"{NOT_YET} (Kubernetes Secrets); give clientCertificate, privateKey and caCertificates "
    "as file paths on the proxy's host"
)
MSG_DR_WORKLOAD_SELECTOR = f"{NOT_YET} (workload-scoped DestinationRules); remove it to apply the rule to every client"
MSG_GW_CREDENTIAL_NAME = (
    f"{NOT_YET} (Kubernetes Secrets); give serverCertificate, privateKey and caCertificates "
    "as file paths on the gateway's host"
)
MSG_GW_ISTIO_MUTUAL = f"ISTIO_MUTUAL on a gateway server is {NOT_YET}; use SIMPLE or MUTUAL with certificate files"
MSG_GW_TLS_TERMINATE_TCP = (
    f"terminating TLS on a protocol TLS server (into tcp routes) is {NOT_YET}; "
    "use protocol HTTPS to terminate into http routes, or mode PASSTHROUGH"
)
MSG_GW_AUTO_PASSTHROUGH_PROTOCOL = "AUTO_PASSTHROUGH needs protocol TLS"
MSG_GW_PLAINTEXT_TLS = (
    "tls settings have no effect on a plaintext server (only httpsRedirect, on HTTP servers); use protocol HTTPS or TLS"
)
MSG_GW_MIXED_PORT = (
    f"plaintext and TLS servers (or HTTP and TCP servers) on one port are {NOT_YET}; give them separate port numbers"
)
MSG_GW_PROTOCOL = (
    "protocol is not supported by istiod_py: use HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, TLS, TCP, MONGO, REDIS or MYSQL"
)
MSG_EXPONENTIAL_DELAY = "not supported by istiod_py (istiod does not implement it either); use fixedDelay"
MSG_HTTP2_ERROR = "not supported by istiod_py (istiod does not implement it either); use httpStatus or grpcStatus"
MSG_SOURCE_SUBNET = "not supported by istiod_py; remove it"
MSG_L4_AT_GATEWAY = (
    f"{NOT_YET} on gateways (gateway tls/tcp routes match only port, gateways and sniHosts); "
    "set the match's gateways to [mesh] or remove the field"
)
MSG_VS_EXPORT_TO_GATEWAY = (
    f"{NOT_YET} for a VirtualService bound to a gateway in a namespace it is not exported to "
    "(gateways see every VirtualService bound to them); export it to the gateway's namespace or remove exportTo"
)
MSG_SIDECAR_INGRESS_TLS = f"{NOT_YET} (TLS termination on the sidecar's inbound listener); remove it"
MSG_SIDECAR_CONNECTION_POOL = f"{NOT_YET} (inbound connection pool limits); remove it"
MSG_EGRESS_PROXY = f"{NOT_YET} (sending unknown destinations to an egress proxy); remove it"
MSG_CAPTURE_IPTABLES = (
    "IPTABLES is not supported by istiod_py: listeners follow the proxy's INTERCEPTION_MODE; use DEFAULT or NONE"
)
MSG_NETWORK = f"{NOT_YET} (multi-network endpoints reached through network gateways); remove it"

# Accepted, but analysis.analyze() warns: they only name stats, or Istio ignores them too.
WARN_STAT_PREFIX = "has no effect in istiod_py (it only names the route's stats)"
WARN_SERVER_NAME = "has no effect in istiod_py (it only names the server's stats)"
WARN_ISTIO_IGNORES = "has no effect (Istio does not implement it either)"


@dataclass(frozen=True)
class Support:
    """How one field is handled. status: supported | rejected | partial | warned."""

    status: str
    module: str = ""
    message: str = ""
    note: str = ""

    def describe(self) -> str:
        note = f" ({self.note})" if self.note else ""
        if self.status == "supported":
            return f"supported: {self.module}{note}"
        if self.status == "rejected":
            return f"rejected{note}: {self.message}"
        if self.status == "partial":
            return f"supported: {self.module}; rejected{note}: {self.message}"
        return f"accepted with a warning{note}: {self.message}"


def _s(module: str, note: str = "") -> Support:
    return Support("supported", module=module, note=note)


def _r(message: str, note: str = "when set") -> Support:
    return Support("rejected", message=message, note=note)


def _p(module: str, message: str, note: str) -> Support:
    return Support("partial", module=module, message=message, note=note)


def _w(message: str, note: str = "") -> Support:
    return Support("warned", message=message, note=note)


T = "translate/"
HTTPROUTE = f"{T}route/httproute.py"
TP = f"{T}traffic/traffic_policy.py"
L4 = f"{T}sidecar/tcproute.py, {T}sidecar/tlsroute.py (sidecars), {T}gateway/listeners.py (gateways)"
REG = "registry/file.py"
CRED = f"{T}gateway/credentials.py"
DELEGATE = f"{T}route/delegate.py"

SUPPORT: dict[str, Support] = {
    # VirtualService
    "VirtualService.hosts": _s(
        f"{T}context.py (vs_for_host), {T}gateway/routes.py", f"none: a delegate, see {DELEGATE}"
    ),
    "VirtualService.gateways": _s(f"{T}context.py (virtual_services)"),
    "VirtualService.http": _s(f"{T}sidecar/routes.py, {HTTPROUTE}, {T}gateway/routes.py"),
    "VirtualService.tls": _s(L4),
    "VirtualService.tcp": _s(L4),
    "VirtualService.exportTo": _p(
        f"{T}scope.py (config_visible) for mesh, {DELEGATE} for delegates",
        MSG_VS_EXPORT_TO_GATEWAY,
        "with a gateway in a namespace exportTo does not list",
    ),
    "HTTPRoute.name": _s(HTTPROUTE),
    "HTTPRoute.match": _s(HTTPROUTE),
    "HTTPRoute.route": _s(HTTPROUTE),
    "HTTPRoute.redirect": _s(HTTPROUTE),
    "HTTPRoute.directResponse": _s(HTTPROUTE),
    "HTTPRoute.delegate": _s(DELEGATE, "one level, merged into the root's routes as istiod does"),
    "HTTPRoute.rewrite": _s(HTTPROUTE),
    "HTTPRoute.timeout": _s(f"{T}traffic/timeout.py"),
    "HTTPRoute.retries": _s(f"{T}traffic/retry.py"),
    "HTTPRoute.fault": _s(f"{T}traffic/fault.py"),
    "HTTPRoute.mirror": _s(f"{T}traffic/mirror.py"),
    "HTTPRoute.mirrors": _s(f"{T}traffic/mirror.py"),
    "HTTPRoute.mirrorPercent": _s(f"{T}traffic/mirror.py", "deprecated"),
    "HTTPRoute.mirrorPercentage": _s(f"{T}traffic/mirror.py"),
    "HTTPRoute.corsPolicy": _s(f"{T}traffic/cors.py"),
    "HTTPRoute.headers": _s(HTTPROUTE),
    "HTTPMatchRequest.name": _s(HTTPROUTE),
    "HTTPMatchRequest.uri": _s(HTTPROUTE),
    "HTTPMatchRequest.scheme": _s(HTTPROUTE),
    "HTTPMatchRequest.method": _s(HTTPROUTE),
    "HTTPMatchRequest.authority": _s(HTTPROUTE),
    "HTTPMatchRequest.headers": _s(HTTPROUTE),
    "HTTPMatchRequest.port": _s(f"{HTTPROUTE} (match_applies)"),
    "HTTPMatchRequest.sourceLabels": _s(f"{HTTPROUTE} (match_applies)"),
    "HTTPMatchRequest.gateways": _s(f"{HTTPROUTE} (match_applies)"),
    "HTTPMatchRequest.queryParams": _s(HTTPROUTE),
    "HTTPMatchRequest.ignoreUriCase": _s(HTTPROUTE),
    "HTTPMatchRequest.withoutHeaders": _s(HTTPROUTE),
    "HTTPMatchRequest.sourceNamespace": _s(f"{HTTPROUTE} (match_applies)"),
    "HTTPMatchRequest.statPrefix": _w(WARN_STAT_PREFIX),
    "StringMatch.exact": _s(HTTPROUTE),
    "StringMatch.prefix": _s(HTTPROUTE),
    "StringMatch.regex": _s(HTTPROUTE),
    "HTTPRouteDestination.destination": _s(HTTPROUTE),
    "HTTPRouteDestination.weight": _s(HTTPROUTE),
    "HTTPRouteDestination.headers": _s(HTTPROUTE),
    "Destination.host": _s(f"{HTTPROUTE} (destination_cluster)"),
    "Destination.subset": _s(f"{HTTPROUTE} (destination_cluster), {T}endpoints.py"),
    "Destination.port": _s(f"{HTTPROUTE} (destination_cluster)"),
    "PortSelector.number": _s(f"{HTTPROUTE}, {TP}"),
    "Headers.request": _s(f"{HTTPROUTE} (apply_headers)"),
    "Headers.response": _s(f"{HTTPROUTE} (apply_headers)"),
    "HeaderOperations.set": _s(f"{HTTPROUTE} (header_ops)"),
    "HeaderOperations.add": _s(f"{HTTPROUTE} (header_ops)"),
    "HeaderOperations.remove": _s(f"{HTTPROUTE} (header_ops)"),
    "HTTPRedirect.uri": _s(HTTPROUTE),
    "HTTPRedirect.authority": _s(HTTPROUTE),
    "HTTPRedirect.port": _s(HTTPROUTE),
    "HTTPRedirect.derivePort": _s(HTTPROUTE),
    "HTTPRedirect.scheme": _s(HTTPROUTE),
    "HTTPRedirect.redirectCode": _s(HTTPROUTE),
    "HTTPDirectResponse.status": _s(HTTPROUTE),
    "HTTPDirectResponse.body": _s(HTTPROUTE),
    "HTTPBody.string": _s(HTTPROUTE),
    "HTTPBody.bytes": _s(HTTPROUTE),
    "Delegate.name": _s(DELEGATE),
    "Delegate.namespace": _s(DELEGATE, "default: the root's namespace"),
    "HTTPRewrite.uri": _s(HTTPROUTE),
    "HTTPRewrite.authority": _s(HTTPROUTE),
    "HTTPRewrite.uriRegexRewrite": _s(HTTPROUTE),
    "RegexRewrite.match": _s(HTTPROUTE),
    "RegexRewrite.rewrite": _s(HTTPROUTE),
    "HTTPRetry.attempts": _s(f"{T}traffic/retry.py"),
    "HTTPRetry.perTryTimeout": _s(f"{T}traffic/retry.py"),
    "HTTPRetry.retryOn": _s(f"{T}traffic/retry.py"),
    "HTTPRetry.retryRemoteLocalities": _s(f"{T}traffic/retry.py"),
    "HTTPRetry.retryIgnorePreviousHosts": _s(f"{T}traffic/retry.py"),
    "HTTPRetry.backoff": _s(f"{T}traffic/retry.py"),
    "HTTPFaultInjection.delay": _s(f"{T}traffic/fault.py"),
    "HTTPFaultInjection.abort": _s(f"{T}traffic/fault.py"),
    "Delay.percent": _s(f"{T}traffic/fault.py", "deprecated"),
    "Delay.fixedDelay": _s(f"{T}traffic/fault.py"),
    "Delay.exponentialDelay": _r(MSG_EXPONENTIAL_DELAY),
    "Delay.percentage": _s(f"{T}traffic/fault.py"),
    "Percent.value": _s(f"{T}traffic/fault.py, {T}traffic/mirror.py"),
    "Abort.httpStatus": _s(f"{T}traffic/fault.py"),
    "Abort.grpcStatus": _s(f"{T}traffic/fault.py", "status names as Istio validates them"),
    "Abort.http2Error": _r(MSG_HTTP2_ERROR),
    "Abort.percentage": _s(f"{T}traffic/fault.py"),
    "HTTPMirrorPolicy.destination": _s(f"{T}traffic/mirror.py"),
    "HTTPMirrorPolicy.percentage": _s(f"{T}traffic/mirror.py"),
    "CorsPolicy.allowOrigin": _s(f"{T}traffic/cors.py", "deprecated"),
    "CorsPolicy.allowOrigins": _s(f"{T}traffic/cors.py"),
    "CorsPolicy.allowMethods": _s(f"{T}traffic/cors.py"),
    "CorsPolicy.allowHeaders": _s(f"{T}traffic/cors.py"),
    "CorsPolicy.exposeHeaders": _s(f"{T}traffic/cors.py"),
    "CorsPolicy.maxAge": _s(f"{T}traffic/cors.py"),
    "CorsPolicy.allowCredentials": _s(f"{T}traffic/cors.py"),
    "CorsPolicy.unmatchedPreflights": _s(f"{T}traffic/cors.py"),
    "TLSRoute.match": _s(L4),
    "TLSRoute.route": _s(L4),
    "TLSMatchAttributes.sniHosts": _s(L4),
    "TLSMatchAttributes.destinationSubnets": _p(f"{T}sidecar/tlsroute.py", MSG_L4_AT_GATEWAY, "on gateways"),
    "TLSMatchAttributes.port": _s(L4),
    "TLSMatchAttributes.sourceLabels": _p(
        f"{T}sidecar/tcproute.py (l4_match_applies)", MSG_L4_AT_GATEWAY, "on gateways"
    ),
    "TLSMatchAttributes.gateways": _s(L4),
    "TLSMatchAttributes.sourceNamespace": _p(
        f"{T}sidecar/tcproute.py (l4_match_applies)", MSG_L4_AT_GATEWAY, "on gateways"
    ),
    "RouteDestination.destination": _s(L4),
    "RouteDestination.weight": _s(L4),
    "TCPRoute.match": _s(L4),
    "TCPRoute.route": _s(L4),
    "L4MatchAttributes.destinationSubnets": _p(f"{T}sidecar/tcproute.py", MSG_L4_AT_GATEWAY, "on gateways"),
    "L4MatchAttributes.port": _s(L4),
    "L4MatchAttributes.sourceSubnet": _r(MSG_SOURCE_SUBNET),
    "L4MatchAttributes.sourceLabels": _p(
        f"{T}sidecar/tcproute.py (l4_match_applies)", MSG_L4_AT_GATEWAY, "on gateways"
    ),
    "L4MatchAttributes.gateways": _s(L4),
    "L4MatchAttributes.sourceNamespace": _p(
        f"{T}sidecar/tcproute.py (l4_match_applies)", MSG_L4_AT_GATEWAY, "on gateways"
    ),
    # DestinationRule
    "DestinationRule.host": _s(f"{T}context.py (destination_rule)"),
    "DestinationRule.trafficPolicy": _s(TP),
    "DestinationRule.subsets": _s(f"{T}clusters.py, {T}endpoints.py, {TP}"),
    "DestinationRule.exportTo": _s(f"{T}context.py, {T}scope.py (config_visible)"),
    "DestinationRule.workloadSelector": _r(MSG_DR_WORKLOAD_SELECTOR),
    "WorkloadSelector.matchLabels": _r(MSG_DR_WORKLOAD_SELECTOR, "with workloadSelector"),
    "TrafficPolicy.loadBalancer": _s(TP),
    "TrafficPolicy.connectionPool": _s(TP),
    "TrafficPolicy.outlierDetection": _s(TP),
    "TrafficPolicy.tls": _s(f"{T}traffic/upstream_tls.py, {T}security/mtls.py"),
    "TrafficPolicy.portLevelSettings": _s(f"{TP} (merge)"),
    "TrafficPolicy.tunnel": _r(MSG_TUNNEL),
    "TrafficPolicy.proxyProtocol": _r(MSG_PROXY_PROTOCOL),
    "PortTrafficPolicy.port": _s(f"{TP} (merge)"),
    "PortTrafficPolicy.loadBalancer": _s(TP),
    "PortTrafficPolicy.connectionPool": _s(TP),
    "PortTrafficPolicy.outlierDetection": _s(TP),
    "PortTrafficPolicy.tls": _s(f"{T}traffic/upstream_tls.py, {T}security/mtls.py"),
    "TunnelSettings.protocol": _r(MSG_TUNNEL, "with tunnel"),
    "TunnelSettings.targetHost": _r(MSG_TUNNEL, "with tunnel"),
    "TunnelSettings.targetPort": _r(MSG_TUNNEL, "with tunnel"),
    "ProxyProtocol.version": _r(MSG_PROXY_PROTOCOL, "with proxyProtocol"),
    "LoadBalancerSettings.simple": _s(TP),
    "LoadBalancerSettings.consistentHash": _s(TP),
    "LoadBalancerSettings.localityLbSetting": _s(f"{T}traffic/lb_locality.py"),
    "LoadBalancerSettings.warmupDurationSecs": _s(TP, "ROUND_ROBIN and LEAST_REQUEST, as Istio"),
    "ConsistentHashLB.httpHeaderName": _s(f"{TP} (hash_policy)"),
    "ConsistentHashLB.httpCookie": _s(f"{TP} (hash_policy)"),
    "ConsistentHashLB.useSourceIp": _s(f"{TP} (hash_policy)"),
    "ConsistentHashLB.httpQueryParameterName": _s(f"{TP} (hash_policy)"),
    "ConsistentHashLB.ringHash": _s(TP),
    "ConsistentHashLB.maglev": _s(TP),
    "ConsistentHashLB.minimumRingSize": _s(TP, "deprecated"),
    "HTTPCookie.name": _s(f"{TP} (hash_policy)"),
    "HTTPCookie.path": _s(f"{TP} (hash_policy)"),
    "HTTPCookie.ttl": _s(f"{TP} (hash_policy)"),
    "RingHash.minimumRingSize": _s(TP),
    "MagLev.tableSize": _s(TP),
    "LocalityLoadBalancerSetting.distribute": _s(f"{T}traffic/lb_locality.py"),
    "LocalityLoadBalancerSetting.failover": _s(f"{T}traffic/lb_locality.py"),
    "LocalityLoadBalancerSetting.failoverPriority": _s(f"{T}traffic/lb_locality.py"),
    "LocalityLoadBalancerSetting.enabled": _s(f"{T}traffic/lb_locality.py"),
    "Distribute.from": _s(f"{T}traffic/lb_locality.py"),
    "Distribute.to": _s(f"{T}traffic/lb_locality.py"),
    "Failover.from": _s(f"{T}traffic/lb_locality.py"),
    "Failover.to": _s(f"{T}traffic/lb_locality.py"),
    "ConnectionPoolSettings.tcp": _s(f"{TP} (apply_connection_pool)"),
    "ConnectionPoolSettings.http": _s(f"{TP} (apply_connection_pool)"),
    "TCPSettings.maxConnections": _s(TP),
    "TCPSettings.connectTimeout": _s(TP),
    "TCPSettings.tcpKeepalive": _s(TP),
    "TCPSettings.maxConnectionDuration": _s(TP),
    "TCPSettings.idleTimeout": _s(TP),
    "TcpKeepalive.probes": _s(TP),
    "TcpKeepalive.time": _s(TP),
    "TcpKeepalive.interval": _s(TP),
    "HTTPSettings.http1MaxPendingRequests": _s(TP),
    "HTTPSettings.http2MaxRequests": _s(TP),
    "HTTPSettings.maxRequestsPerConnection": _s(TP),
    "HTTPSettings.maxRetries": _s(TP),
    "HTTPSettings.idleTimeout": _s(TP),
    "HTTPSettings.h2UpgradePolicy": _s(TP),
    "HTTPSettings.useClientProtocol": _s(TP),
    "HTTPSettings.maxConcurrentStreams": _s(TP),
    "OutlierDetection.consecutiveErrors": _s(TP, "deprecated"),
    "OutlierDetection.splitExternalLocalOriginErrors": _s(TP),
    "OutlierDetection.consecutiveLocalOriginFailures": _s(TP),
    "OutlierDetection.consecutiveGatewayErrors": _s(TP),
    "OutlierDetection.consecutive5xxErrors": _s(TP),
    "OutlierDetection.interval": _s(TP),
    "OutlierDetection.baseEjectionTime": _s(TP),
    "OutlierDetection.maxEjectionPercent": _s(TP),
    "OutlierDetection.minHealthPercent": _s(TP),
    "ClientTLSSettings.mode": _s(f"{T}traffic/upstream_tls.py, {T}security/mtls.py (ISTIO_MUTUAL)"),
    "ClientTLSSettings.clientCertificate": _s(f"{T}traffic/upstream_tls.py"),
    "ClientTLSSettings.privateKey": _s(f"{T}traffic/upstream_tls.py"),
    "ClientTLSSettings.caCertificates": _s(f"{T}traffic/upstream_tls.py"),
    "ClientTLSSettings.credentialName": _r(MSG_DR_CREDENTIAL_NAME),
    "ClientTLSSettings.subjectAltNames": _s(f"{T}traffic/upstream_tls.py, {T}security/mtls.py"),
    "ClientTLSSettings.sni": _s(f"{T}traffic/upstream_tls.py, {T}security/mtls.py"),
    "ClientTLSSettings.insecureSkipVerify": _s(f"{T}traffic/upstream_tls.py"),
    "ClientTLSSettings.caCrl": _s(f"{T}traffic/upstream_tls.py"),
    "Subset.name": _s(f"{T}clusters.py (subsets_of), {T}endpoints.py"),
    "Subset.labels": _s(f"{T}endpoints.py (subset_labels)"),
    "Subset.trafficPolicy": _s(f"{TP} (merge)"),
    # Gateway
    "Gateway.servers": _s(f"{T}gateway/servers.py, {T}gateway/listeners.py, {T}gateway/routes.py"),
    "Gateway.selector": _s(f"{T}gateway/servers.py (selected_gateways)"),
    "Server.port": _s(f"{T}gateway/servers.py"),
    "Server.bind": _s(f"{T}gateway/servers.py (bind_address), {T}gateway/routes.py"),
    "Server.hosts": _s(f"{T}gateway/servers.py, {T}gateway/routes.py (bound_hosts)"),
    "Server.tls": _p(CRED, MSG_GW_PLAINTEXT_TLS, "on a plaintext server, other than httpsRedirect on HTTP"),
    "Server.defaultEndpoint": _w(WARN_ISTIO_IGNORES),
    "Server.name": _w(WARN_SERVER_NAME),
    "Port.number": _s(f"{T}gateway/servers.py, {T}gateway/listeners.py"),
    "Port.protocol": _p(
        f"{T}gateway/servers.py, {T}gateway/listeners.py",
        f"{MSG_GW_PROTOCOL}; for a port shared with a server of another class: {MSG_GW_MIXED_PORT}",
        "other protocols, and plaintext/TLS or HTTP/TCP servers sharing a port",
    ),
    "Port.name": _s(f"{T}gateway/routes.py (https_route_name)"),
    "Port.targetPort": _w(WARN_ISTIO_IGNORES, "deprecated; the gateway Service's targetPort is used"),
    "ServerTLSSettings.httpsRedirect": _s(f"{T}gateway/routes.py"),
    "ServerTLSSettings.mode": _p(
        f"{CRED}, {T}gateway/listeners.py",
        f"ISTIO_MUTUAL: {MSG_GW_ISTIO_MUTUAL}; SIMPLE/MUTUAL/OPTIONAL_MUTUAL with protocol TLS: "
        f"{MSG_GW_TLS_TERMINATE_TCP}; AUTO_PASSTHROUGH without protocol TLS: {MSG_GW_AUTO_PASSTHROUGH_PROTOCOL}",
        "for the combinations named",
    ),
    "ServerTLSSettings.serverCertificate": _s(CRED),
    "ServerTLSSettings.privateKey": _s(CRED),
    "ServerTLSSettings.caCertificates": _s(CRED),
    "ServerTLSSettings.caCrl": _s(CRED),
    "ServerTLSSettings.credentialName": _r(MSG_GW_CREDENTIAL_NAME),
    "ServerTLSSettings.credentialNames": _r(MSG_GW_CREDENTIAL_NAME),
    "ServerTLSSettings.tlsCertificates": _s(CRED),
    "ServerTLSSettings.subjectAltNames": _s(CRED),
    "ServerTLSSettings.verifyCertificateSpki": _s(CRED),
    "ServerTLSSettings.verifyCertificateHash": _s(CRED),
    "ServerTLSSettings.minProtocolVersion": _s(CRED),
    "ServerTLSSettings.maxProtocolVersion": _s(CRED),
    "ServerTLSSettings.cipherSuites": _s(CRED),
    "TLSCertificate.serverCertificate": _s(CRED),
    "TLSCertificate.privateKey": _s(CRED),
    "TLSCertificate.caCertificates": _s(CRED),
    # ServiceEntry
    "ServiceEntry.hosts": _s(REG),
    "ServiceEntry.addresses": _s(f"{REG}, {T}sidecar/listeners.py, {T}sidecar/routes.py"),
    "ServiceEntry.ports": _s(REG),
    "ServiceEntry.location": _s(
        REG, "Service.mesh_external; auto mTLS follows the endpoints' security.istio.io/tlsMode label"
    ),
    "ServiceEntry.resolution": _s(f"{REG}, {T}clusters.py"),
    "ServiceEntry.endpoints": _s(REG),
    "ServiceEntry.workloadSelector": _s(REG, "selects WorkloadEntries (file mode has no pods)"),
    "ServiceEntry.exportTo": _s(f"{REG}, {T}scope.py"),
    "ServiceEntry.subjectAltNames": _s(f"{T}security/mtls.py (service_accounts)"),
    "ServicePort.number": _s(REG),
    "ServicePort.protocol": _s(REG),
    "ServicePort.name": _s(REG),
    "ServicePort.targetPort": _s(REG),
    "WorkloadEntry.address": _s(REG),
    "WorkloadEntry.ports": _s(REG),
    "WorkloadEntry.labels": _s(f"{REG}, {T}endpoints.py"),
    "WorkloadEntry.network": _r(MSG_NETWORK),
    "WorkloadEntry.locality": _s(f"{REG}, {T}endpoints.py, {T}traffic/lb_locality.py"),
    "WorkloadEntry.weight": _s(f"{REG}, {T}endpoints.py"),
    "WorkloadEntry.serviceAccount": _s(f"{REG}, {T}security/mtls.py"),
    "WorkloadSelector.labels": _s(f"{REG} (ServiceEntry), {T}scope.py (Sidecar)"),
    # Sidecar
    "Sidecar.workloadSelector": _s(f"{T}scope.py (sidecar_for)"),
    "Sidecar.ingress": _s(f"{T}context.py, {T}sidecar/listeners.py"),
    "Sidecar.egress": _s(f"{T}context.py, {T}sidecar/listeners.py"),
    "Sidecar.inboundConnectionPool": _r(MSG_SIDECAR_CONNECTION_POOL),
    "Sidecar.outboundTrafficPolicy": _s(f"{T}context.py, {T}sidecar/routes.py"),
    "IstioIngressListener.port": _s(f"{T}context.py, {T}sidecar/listeners.py"),
    "IstioIngressListener.bind": _s(f"{T}sidecar/listeners.py (inbound_listener)"),
    "IstioIngressListener.captureMode": _p(
        f"{T}sidecar/listeners.py",
        MSG_CAPTURE_IPTABLES,
        "IPTABLES; DEFAULT and NONE follow the proxy's INTERCEPTION_MODE",
    ),
    "IstioIngressListener.defaultEndpoint": _s(f"{T}sidecar/listeners.py, {T}generate.py"),
    "IstioIngressListener.tls": _r(MSG_SIDECAR_INGRESS_TLS),
    "IstioIngressListener.connectionPool": _r(MSG_SIDECAR_CONNECTION_POOL),
    "SidecarPort.number": _s(f"{T}context.py, {T}sidecar/listeners.py"),
    "SidecarPort.protocol": _s(f"{T}context.py, {T}sidecar/listeners.py"),
    "SidecarPort.name": _s(f"{T}context.py, {T}sidecar/listeners.py"),
    "SidecarPort.targetPort": _s(f"{T}context.py, {T}generate.py (inbound cluster target)"),
    "IstioEgressListener.port": _s(f"{T}context.py, {T}sidecar/listeners.py"),
    "IstioEgressListener.bind": _s(f"{T}sidecar/listeners.py (outbound_listeners)"),
    "IstioEgressListener.captureMode": _p(
        f"{T}sidecar/listeners.py",
        MSG_CAPTURE_IPTABLES,
        "IPTABLES; DEFAULT and NONE follow the proxy's INTERCEPTION_MODE",
    ),
    "IstioEgressListener.hosts": _s(f"{T}scope.py (EgressHosts)"),
    "OutboundTrafficPolicy.mode": _s(f"{T}context.py, {T}sidecar/routes.py"),
    "OutboundTrafficPolicy.egressProxy": _r(MSG_EGRESS_PROXY),
}

# Where the same message means different things in different places.
PATH_SUPPORT: dict[str, Support] = {
    "spec.egress[].port.targetPort": _w(WARN_ISTIO_IGNORES, "egress ports have no target"),
}

DOC_KINDS = ("VirtualService", "DestinationRule", "Gateway", "ServiceEntry", "Sidecar")


# --- walking the descriptors --------------------------------------------------------------------


def _is_leaf(desc: Descriptor | None) -> bool:
    return desc is None or desc.full_name.startswith("google.protobuf.")


def field_paths(desc: Descriptor, prefix: str = "spec") -> Iterator[tuple[str, Descriptor, FieldDescriptor]]:
    """Every field path under `desc`, json names, `[]` for lists and `{}` for maps:
    `spec.http[].match[].headers{}.exact`. Yields (path, containing message, field)."""
    yield from _walk(desc, prefix, frozenset())


def _walk(desc: Descriptor, prefix: str, seen: frozenset[str]) -> Iterator[tuple[str, Descriptor, FieldDescriptor]]:
    for f in desc.fields:
        path = f"{prefix}.{f.json_name}"
        child = f.message_type
        if child is not None and child.GetOptions().map_entry:
            path += "{}"
            yield path, desc, f
            child = child.fields_by_name["value"].message_type
        else:
            if f.is_repeated:
                path += "[]"
            yield path, desc, f
        if not _is_leaf(child) and child is not None and child.full_name not in seen:
            yield from _walk(child, path, seen | {desc.full_name})


def support_key(desc: Descriptor, f: FieldDescriptor) -> str:
    return f"{desc.name}.{f.json_name}"


def support_table(kind: str) -> list[tuple[str, Support]]:
    """(path, support) for every field of a kind; fields under a rejected field inherit it."""
    from istiod_py.config.model import KINDS

    out: list[tuple[str, Support]] = []
    rejected: list[tuple[str, Support]] = []
    root: Any = KINDS[kind].message.DESCRIPTOR
    for path, desc, f in field_paths(root):
        parent = next((p for p in rejected if path.startswith(p[0] + ".")), None)
        if parent is not None:
            s = parent[1]
            out.append((path, Support("rejected", message=s.message, note=f"with {parent[0]}")))
            continue
        s = PATH_SUPPORT.get(path) or SUPPORT[support_key(desc, f)]
        if s.status == "rejected":
            rejected.append((path, s))
        out.append((path, s))
    return out


def render_doc() -> str:
    lines = [
        "# Istio field support in istiod_py",
        "",
        "Generated by `python -m istiod_py.config.unsupported > docs/field-support.md` from the",
        "table in `istiod_py/config/unsupported.py`; `tests/unit/test_field_support.py` checks it",
        "lists every field of the protos.",
        "",
        "Every field is either **supported** (the module that implements it is named), **rejected**",
        "when set (loading the resource fails with the message shown, on the field's path, e.g.",
        "`spec.trafficPolicy.tunnel: not supported by istiod_py yet (...)`), or, for the few fields",
        "that only name stats or that Istio ignores too, **accepted with a warning** from",
        "`istiod_py.config.analysis.analyze`. Nothing is silently ignored.",
        "",
        "Paths use JSON names; `[]` marks a list, `{}` a map. Module paths are under `istiod_py/`.",
        "",
        "Cross-reference warnings (`analyze`, not rejections): IST0101 ReferencedResourceNotFound",
        "for a route to a subset no DestinationRule defines, a VirtualService bound to a Gateway",
        "that does not exist, and a destination host that is not in the registry.",
        "",
    ]
    for kind in DOC_KINDS:
        lines += [f"## {kind}", "", "| field | support |", "|---|---|"]
        for path, s in support_table(kind):
            text = s.describe().replace("|", "\\|")
            lines.append(f"| `{path}` | {text} |")
        lines.append("")
    return "\n".join(lines)


# --- load-time rejection ------------------------------------------------------------------------


def _set(msg: Any, name: str) -> bool:
    """Proto presence, or non-default for scalars / non-empty for repeated and maps."""
    fd = msg.DESCRIPTOR.fields_by_name[name]
    if fd.is_repeated:
        return len(getattr(msg, name)) > 0
    if fd.message_type is not None or fd.containing_oneof is not None or fd.has_presence:
        return bool(msg.HasField(name))
    return bool(getattr(msg, name))


def _json(msg: Any, name: str) -> str:
    return str(msg.DESCRIPTOR.fields_by_name[name].json_name)


def _reject(msg: Any, names: tuple[str, ...], path: str, message: str, out: Problems) -> None:
    for n in names:
        if _set(msg, n):
            out.append(FieldProblem(f"{path}.{_json(msg, n)}", message))


# VirtualService


def _gateway_names(names: Any, vs_gateways: Any) -> list[str]:
    return list(names) or list(vs_gateways) or ["mesh"]


def _vs_gateway_ns(ref: str, vs_ns: str) -> str:
    return ref.partition("/")[0] if "/" in ref else vs_ns


def check_virtual_service(vs: vs_pb.VirtualService, namespace: str = "") -> Problems:
    out: Problems = []
    for i, r in enumerate(vs.http):
        path = f"spec.http[{i}]"
        if r.HasField("fault"):
            if r.fault.HasField("delay"):
                _reject(r.fault.delay, ("exponential_delay",), f"{path}.fault.delay", MSG_EXPONENTIAL_DELAY, out)
            if r.fault.HasField("abort"):
                _reject(r.fault.abort, ("http2_error",), f"{path}.fault.abort", MSG_HTTP2_ERROR, out)
    l4_routes: tuple[tuple[str, Any], ...] = (("tls", vs.tls), ("tcp", vs.tcp))
    for route_kind, routes in l4_routes:
        for i, rt in enumerate(routes):
            for j, m in enumerate(rt.match):
                path = f"spec.{route_kind}[{i}].match[{j}]"
                if route_kind == "tcp":
                    _reject(m, ("source_subnet",), path, MSG_SOURCE_SUBNET, out)
                if any(g != "mesh" for g in _gateway_names(m.gateways, vs.gateways)):
                    fields = ("destination_subnets", "source_labels", "source_namespace")
                    _reject(m, fields, path, MSG_L4_AT_GATEWAY, out)
    export = set(vs.export_to)
    if export and "*" not in export:
        targets = {namespace if t == "." else t for t in export}
        for g in vs.gateways:
            if g != "mesh" and _vs_gateway_ns(g, namespace) not in targets:
                out.append(FieldProblem("spec.exportTo", MSG_VS_EXPORT_TO_GATEWAY))
                break
    return out


# DestinationRule


def _traffic_policy(tp: dr_pb.TrafficPolicy, path: str, out: Problems) -> None:
    _reject(tp, ("tunnel",), path, MSG_TUNNEL, out)
    _reject(tp, ("proxy_protocol",), path, MSG_PROXY_PROTOCOL, out)
    _reject(tp.tls, ("credential_name",), f"{path}.tls", MSG_DR_CREDENTIAL_NAME, out)
    for i, p in enumerate(tp.port_level_settings):
        _reject(p.tls, ("credential_name",), f"{path}.portLevelSettings[{i}].tls", MSG_DR_CREDENTIAL_NAME, out)


def check_destination_rule(dr: dr_pb.DestinationRule, namespace: str = "") -> Problems:
    out: Problems = []
    _reject(dr, ("workload_selector",), "spec", MSG_DR_WORKLOAD_SELECTOR, out)
    if dr.HasField("traffic_policy"):
        _traffic_policy(dr.traffic_policy, "spec.trafficPolicy", out)
    for i, s in enumerate(dr.subsets):
        if s.HasField("traffic_policy"):
            _traffic_policy(s.traffic_policy, f"spec.subsets[{i}].trafficPolicy", out)
    return out


# Gateway

HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC", "GRPC-WEB"})
TLS_PROTOCOLS = frozenset({"HTTPS", "TLS"})
TCP_PROTOCOLS = frozenset({"TCP", "MONGO", "REDIS", "MYSQL"})
GATEWAY_PROTOCOLS = HTTP_PROTOCOLS | TLS_PROTOCOLS | TCP_PROTOCOLS
_TERMINATING = (
    gw_pb.ServerTLSSettings.SIMPLE,
    gw_pb.ServerTLSSettings.MUTUAL,
    gw_pb.ServerTLSSettings.OPTIONAL_MUTUAL,
)


def _server_class(protocol: str) -> str:
    if protocol in TLS_PROTOCOLS:
        return "tls"
    return "http" if protocol in HTTP_PROTOCOLS else "tcp"


def _server(s: gw_pb.Server, path: str, out: Problems) -> None:
    protocol = s.port.protocol.upper()
    if protocol and protocol not in GATEWAY_PROTOCOLS:
        out.append(FieldProblem(f"{path}.port.protocol", f"{MSG_GW_PROTOCOL} (got {s.port.protocol!r})"))
        return
    if not s.HasField("tls"):
        return
    tls = s.tls
    tpath = f"{path}.tls"
    _reject(tls, ("credential_name", "credential_names"), tpath, MSG_GW_CREDENTIAL_NAME, out)
    if protocol not in TLS_PROTOCOLS:
        rest = gw_pb.ServerTLSSettings()
        rest.CopyFrom(tls)
        if protocol in HTTP_PROTOCOLS:
            rest.ClearField("https_redirect")
        rest.ClearField("credential_name")  # reported above
        rest.ClearField("credential_names")
        if rest.ListFields():
            out.append(FieldProblem(tpath, MSG_GW_PLAINTEXT_TLS))
        return
    if tls.mode == gw_pb.ServerTLSSettings.ISTIO_MUTUAL:
        out.append(FieldProblem(f"{tpath}.mode", MSG_GW_ISTIO_MUTUAL))
    elif protocol == "TLS" and tls.mode in _TERMINATING:
        out.append(FieldProblem(f"{tpath}.mode", MSG_GW_TLS_TERMINATE_TCP))
    elif protocol != "TLS" and tls.mode == gw_pb.ServerTLSSettings.AUTO_PASSTHROUGH:
        out.append(FieldProblem(f"{tpath}.mode", MSG_GW_AUTO_PASSTHROUGH_PROTOCOL))


def check_gateway(gw: gw_pb.Gateway, namespace: str = "") -> Problems:
    out: Problems = []
    classes: dict[tuple[str, int], tuple[int, str]] = {}
    for i, s in enumerate(gw.servers):
        path = f"spec.servers[{i}]"
        _server(s, path, out)
        protocol = s.port.protocol.upper()
        if not s.port.number or protocol not in GATEWAY_PROTOCOLS:
            continue
        key = (s.bind, s.port.number)
        cls = _server_class(protocol)
        first = classes.setdefault(key, (i, cls))
        if first[1] != cls:
            out.append(
                FieldProblem(
                    f"{path}.port.protocol",
                    f"{MSG_GW_MIXED_PORT} (port {s.port.number}: {protocol} here, "
                    f"{first[1].upper()} in spec.servers[{first[0]}])",
                )
            )
    return out


# ServiceEntry / WorkloadEntry


def check_service_entry(se: se_pb.ServiceEntry, namespace: str = "") -> Problems:
    out: Problems = []
    for i, ep in enumerate(se.endpoints):
        _reject(ep, ("network",), f"spec.endpoints[{i}]", MSG_NETWORK, out)
    return out


def check_workload_entry(we: Any, namespace: str = "") -> Problems:
    out: Problems = []
    _reject(we, ("network",), "spec", MSG_NETWORK, out)
    return out


# Sidecar


def check_sidecar(sc: sc_pb.Sidecar, namespace: str = "") -> Problems:
    out: Problems = []
    _reject(sc, ("inbound_connection_pool",), "spec", MSG_SIDECAR_CONNECTION_POOL, out)
    for i, ing in enumerate(sc.ingress):
        path = f"spec.ingress[{i}]"
        _reject(ing, ("tls",), path, MSG_SIDECAR_INGRESS_TLS, out)
        _reject(ing, ("connection_pool",), path, MSG_SIDECAR_CONNECTION_POOL, out)
        if ing.capture_mode == sc_pb.IPTABLES:
            out.append(FieldProblem(f"{path}.captureMode", MSG_CAPTURE_IPTABLES))
    for i, eg in enumerate(sc.egress):
        if eg.capture_mode == sc_pb.IPTABLES:
            out.append(FieldProblem(f"spec.egress[{i}].captureMode", MSG_CAPTURE_IPTABLES))
    if sc.HasField("outbound_traffic_policy"):
        _reject(sc.outbound_traffic_policy, ("egress_proxy",), "spec.outboundTrafficPolicy", MSG_EGRESS_PROXY, out)
    return out


CHECKS: dict[str, Callable[[Any, str], Problems]] = {
    "VirtualService": check_virtual_service,
    "DestinationRule": check_destination_rule,
    "Gateway": check_gateway,
    "ServiceEntry": check_service_entry,
    "WorkloadEntry": check_workload_entry,
    "Sidecar": check_sidecar,
}


def check_unsupported(kind: str, spec: Any, namespace: str = "") -> Problems:
    """FieldProblems for every set field istiod_py does not implement."""
    check = CHECKS.get(kind)
    return check(spec, namespace) if check is not None else []


# --- fields accepted with a warning (analysis.analyze reports them) ----------------------------


def ignored_fields(kind: str, spec: Any) -> list[FieldProblem]:
    """Set fields that are accepted but have no effect (stats names, fields Istio ignores)."""
    out: Problems = []
    if kind == "VirtualService":
        for i, r in enumerate(spec.http):
            for j, m in enumerate(r.match):
                if m.stat_prefix:
                    out.append(FieldProblem(f"spec.http[{i}].match[{j}].statPrefix", WARN_STAT_PREFIX))
    elif kind == "Gateway":
        for i, s in enumerate(spec.servers):
            if s.name:
                out.append(FieldProblem(f"spec.servers[{i}].name", WARN_SERVER_NAME))
            if s.default_endpoint:
                out.append(FieldProblem(f"spec.servers[{i}].defaultEndpoint", WARN_ISTIO_IGNORES))
            if s.port.target_port:
                out.append(FieldProblem(f"spec.servers[{i}].port.targetPort", WARN_ISTIO_IGNORES))
    elif kind == "Sidecar":
        for i, eg in enumerate(spec.egress):
            if eg.port.target_port:
                out.append(FieldProblem(f"spec.egress[{i}].port.targetPort", WARN_ISTIO_IGNORES))
    return out


if __name__ == "__main__":
    print(render_doc(), end="")
