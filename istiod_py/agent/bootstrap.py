"""Envoy bootstrap for a sidecar or gateway: node identity and Istio-style node
metadata, the ADS cluster pointing at the control plane, the admin address."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from istiod_py.model.proxy import node_id

XDS_CLUSTER = "xds-grpc"
SDS_CLUSTER = "sds-grpc"
# Node metadata that tells the control plane this proxy has the `sds-grpc`
# cluster, so it may be sent mesh mTLS config (translate/security/mtls.py).
SDS_METADATA_KEY = "SDS"


@dataclass
class BootstrapOptions:
    proxy_type: str = "sidecar"  # or "router"
    ip: str = "127.0.0.1"
    name: str = "app"
    namespace: str = "default"
    service_account: str = "default"
    labels: Mapping[str, str] = field(default_factory=dict)
    workload_name: str = ""
    interception_mode: str = "NONE"
    discovery_address: str = "127.0.0.1:15010"
    admin_address: str = "127.0.0.1"
    admin_port: int = 15000
    delta: bool = False
    cluster_id: str = "Kubernetes"
    dns_domain: str = ""
    # TLS to the control plane (port 15012): verify it against this root file.
    xds_root_cert: str = ""
    xds_server_name: str = "istiod.istio-system.svc"
    # Workload certificates from a local SDS server (the agent) on this unix socket.
    sds_socket: str = ""
    extra_metadata: Mapping[str, Any] = field(default_factory=dict)
    # Istio's 15090: Envoy's /stats/prometheus on the workload's address (0: none).
    stats_port: int = 0
    # Istio's 15021: Envoy forwards GET /healthz/ready to the agent's status server
    # (agent_address, HOST:PORT), so readiness needs a serving Envoy too (0: none).
    readiness_port: int = 0
    readiness_address: str = "0.0.0.0"
    agent_address: str = ""


def _split(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"address {addr!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _h2_options() -> dict[str, Any]:
    return {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}},
        }
    }


def _cluster(name: str, address: dict[str, Any], resolve: bool) -> dict[str, Any]:
    return {
        "name": name,
        "type": "STRICT_DNS" if resolve else "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": _h2_options(),
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
    }


def build_bootstrap(o: BootstrapOptions) -> dict[str, Any]:
    nid = node_id(o.proxy_type, o.ip, o.name, o.namespace, o.dns_domain)
    metadata: dict[str, Any] = {
        "NAMESPACE": o.namespace,
        "SERVICE_ACCOUNT": o.service_account,
        "LABELS": dict(o.labels),
        "WORKLOAD_NAME": o.workload_name or o.name,
        "INTERCEPTION_MODE": o.interception_mode,
        "CLUSTER_ID": o.cluster_id,
        "ISTIO_VERSION": "istiod_py",
        "INSTANCE_IPS": o.ip,
        # proxyAdminPort is Istio's ProxyConfig field; ADMIN_ADDRESS (istiod_py's) adds the host,
        # which on one machine is not the node IP: `proxy-config` and `proxy-status PROXY` read both.
        "PROXY_CONFIG": {"discoveryAddress": o.discovery_address, "proxyAdminPort": o.admin_port},
        "ADMIN_ADDRESS": f"{o.admin_address}:{o.admin_port}",
    }
    if o.sds_socket:
        metadata[SDS_METADATA_KEY] = "true"
    metadata.update(o.extra_metadata)
    host, port = _split(o.discovery_address)
    resolve = not host.replace(".", "").isdigit() and ":" not in host
    xds = _cluster(XDS_CLUSTER, {"socket_address": {"address": host, "port_value": port}}, resolve)
    if o.xds_root_cert:
        xds["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": o.xds_server_name,
                "common_tls_context": {
                    "alpn_protocols": ["h2"],
                    "validation_context": {
                        "trusted_ca": {"filename": o.xds_root_cert},
                        "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": o.xds_server_name}}],
                    },
                    **(
                        {"tls_certificate_sds_secret_configs": [{"name": "default", "sds_config": _sds_config()}]}
                        if o.sds_socket
                        else {}
                    ),
                },
            },
        }
    clusters = [xds]
    if o.sds_socket:
        clusters.append(_cluster(SDS_CLUSTER, {"pipe": {"path": o.sds_socket}}, False))
    listeners = []
    if o.stats_port:
        clusters.append(_static_cluster(STATS_CLUSTER, o.admin_address, o.admin_port))
        bind = o.ip if o.interception_mode == "NONE" else "0.0.0.0"
        listeners.append(_http_listener(STATS_CLUSTER, bind, o.stats_port, "/stats/prometheus", STATS_CLUSTER, "stats"))
    if o.readiness_port and o.agent_address:
        host, port = _split(o.agent_address)
        clusters.append(_static_cluster(AGENT_CLUSTER, host, port))
        ready = _http_listener(
            "agent_readiness", o.readiness_address, o.readiness_port, "/healthz/ready", AGENT_CLUSTER, "agent"
        )
        listeners.append(ready)
    return {
        "node": {"id": nid, "cluster": f"{o.workload_name or o.name}.{o.namespace}", "metadata": metadata},
        "admin": {"address": {"socket_address": {"address": o.admin_address, "port_value": o.admin_port}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if o.delta else "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}],
                "set_node_on_first_message_only": True,
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": "0s"},
            "lds_config": {"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": "0s"},
        },
        "static_resources": {"clusters": clusters, **({"listeners": listeners} if listeners else {})},
        # Without iptables the workload's address is its identity on the wire:
        # connections leave from it, so servers see source.ip as that workload.
        **(
            {"cluster_manager": {"upstream_bind_config": {"source_address": {"address": o.ip, "port_value": 0}}}}
            if o.interception_mode == "NONE" and o.ip.startswith("127.") and o.ip != "127.0.0.1"
            else {}
        ),
        "layered_runtime": {
            "layers": [
                {
                    "name": "global config",
                    "static_layer": {"overload.global_downstream_max_connections": 100000},
                }
            ]
        },
    }


def _sds_config() -> dict[str, Any]:
    return {
        "resource_api_version": "V3",
        "api_config_source": {
            "api_type": "GRPC",
            "transport_api_version": "V3",
            "grpc_services": [{"envoy_grpc": {"cluster_name": SDS_CLUSTER}}],
        },
    }


STATS_CLUSTER = "prometheus_stats"
AGENT_CLUSTER = "agent"


def _static_cluster(name: str, host: str, port: int) -> dict[str, Any]:
    addr = {"socket_address": {"address": host, "port_value": port}}
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "0.250s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": addr}}]}]},
    }


def _http_listener(name: str, bind: str, port: int, prefix: str, cluster: str, stat_prefix: str) -> dict[str, Any]:
    """A static listener as Istio's bootstrap has for 15090 (`prometheus_stats`: Envoy's
    admin /stats/prometheus without the rest of the admin API) and 15021 (the agent's
    /healthz/ready): GET PREFIX goes to CLUSTER, every other path is a 404."""
    route = {"match": {"prefix": prefix}, "route": {"cluster": cluster}}
    return {
        "name": name,
        "address": {"socket_address": {"address": bind, "port_value": port}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
                            ".HttpConnectionManager",
                            "stat_prefix": stat_prefix,
                            "route_config": {
                                "virtual_hosts": [{"name": "backend", "domains": ["*"], "routes": [route]}]
                            },
                            "http_filters": [
                                {
                                    "name": "envoy.filters.http.router",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                                    },
                                }
                            ],
                        },
                    }
                ]
            }
        ],
    }
