"""DestinationRule: which fields istiod_py implements, and load-time rejection of the rest."""

from __future__ import annotations

from istio.networking.v1alpha3 import destination_rule_pb2 as dr_pb

from .support import NOT_YET, TP, Problems, Support, T, _r, _reject, _s

MSG_TUNNEL = f"{NOT_YET} (HTTP CONNECT tunneling to the destination); remove it"
MSG_PROXY_PROTOCOL = f"{NOT_YET} (sending the PROXY protocol header upstream); remove it"
MSG_DR_WORKLOAD_SELECTOR = f"{NOT_YET} (workload-scoped DestinationRules); remove it to apply the rule to every client"

SUPPORT: dict[str, Support] = {
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
    "ClientTLSSettings.credentialName": _s(f"{T}traffic/upstream_tls.py, istiod_py/kube/credentials.py"),
    "ClientTLSSettings.subjectAltNames": _s(f"{T}traffic/upstream_tls.py, {T}security/mtls.py"),
    "ClientTLSSettings.sni": _s(f"{T}traffic/upstream_tls.py, {T}security/mtls.py"),
    "ClientTLSSettings.insecureSkipVerify": _s(f"{T}traffic/upstream_tls.py"),
    "ClientTLSSettings.caCrl": _s(f"{T}traffic/upstream_tls.py"),
    "Subset.name": _s(f"{T}clusters.py (subsets_of), {T}endpoints.py"),
    "Subset.labels": _s(f"{T}endpoints.py (subset_labels)"),
    "Subset.trafficPolicy": _s(f"{TP} (merge)"),
}


def _traffic_policy(tp: dr_pb.TrafficPolicy, path: str, out: Problems) -> None:
    _reject(tp, ("tunnel",), path, MSG_TUNNEL, out)
    _reject(tp, ("proxy_protocol",), path, MSG_PROXY_PROTOCOL, out)


def check_destination_rule(dr: dr_pb.DestinationRule, namespace: str = "") -> Problems:
    out: Problems = []
    _reject(dr, ("workload_selector",), "spec", MSG_DR_WORKLOAD_SELECTOR, out)
    if dr.HasField("traffic_policy"):
        _traffic_policy(dr.traffic_policy, "spec.trafficPolicy", out)
    for i, s in enumerate(dr.subsets):
        if s.HasField("traffic_policy"):
            _traffic_policy(s.traffic_policy, f"spec.subsets[{i}].trafficPolicy", out)
    return out
