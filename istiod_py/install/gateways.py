"""The ingress and egress gateways: a Deployment running `istiod-py agent
--type router` and its Service, labelled as Istio's (`app: istio-ingressgateway`,
`istio: ingressgateway`) so Gateway resources' selectors find them. Ports as
Istio's: the router listens on 8080/8443 (no privileged ports as UID 1337) and
the Service maps 80->8080 and 443->8443; 15021 is the readiness port."""

from __future__ import annotations

from typing import Any

from istiod_py.inject.template import ROOT_CERT, TOKEN
from istiod_py.inject.template import volumes as sidecar_volumes
from istiod_py.inject.values import InjectionValues


def _env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def gateway(v: dict[str, Any], which: str, inj: InjectionValues) -> list[dict[str, Any]]:
    name = f"istio-{which}gateway"
    ns = v["namespace"]
    g = v["gateways"][which]
    labels = {"app": name, "istio": f"{which}gateway"}
    sa = f"{name}-service-account"
    pod_labels = {
        **labels,
        "istio.io/rev": v["revision"] or "default",
        "service.istio.io/canonical-name": name,
        "service.istio.io/canonical-revision": "latest",
        "sidecar.istio.io/inject": "false",
    }
    container = {
        "name": "istio-proxy",
        "image": inj.image(),
        "imagePullPolicy": inj.image_pull_policy,
        "args": [
            "agent",
            "--type",
            "router",
            "--ip",
            "$(INSTANCE_IP)",
            "--name",
            "$(POD_NAME)",
            "--namespace",
            "$(POD_NAMESPACE)",
            "--service-account",
            "$(SERVICE_ACCOUNT)",
            "--workload-name",
            name,
            "--labels-file",
            "/etc/istio/pod/labels",
            "--discovery-address",
            inj.discovery_address,
            "--ca-address",
            inj.discovery_address,
            "--xds-tls",
            "--xds-server-name",
            inj.istiod_service,
            "--root-cert",
            ROOT_CERT,
            "--token-file",
            TOKEN,
            "--trust-domain",
            inj.trust_domain,
            "--workdir",
            "/etc/istio/proxy",
            "--envoy-log-level",
            inj.log_level,
            "--status-address",
            "0.0.0.0",
            "--status-port",
            "15020",
            "--readiness-port",
            "15021",
            "--stats-port",  # Envoy's own /stats/prometheus on the http-envoy-prom port below
            "15090",
        ],
        "env": [
            _env("POD_NAME", "metadata.name"),
            _env("POD_NAMESPACE", "metadata.namespace"),
            _env("INSTANCE_IP", "status.podIP"),
            _env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
            _env("HOST_IP", "status.hostIP"),
            {"name": "ISTIO_META_WORKLOAD_NAME", "value": name},
            {"name": "ISTIO_META_OWNER", "value": f"kubernetes://apis/apps/v1/namespaces/{ns}/deployments/{name}"},
            {"name": "ISTIO_META_CLUSTER_ID", "value": inj.cluster_id},
            {"name": "ISTIO_META_MESH_ID", "value": inj.mesh_id},
            {"name": "TRUST_DOMAIN", "value": inj.trust_domain},
        ],
        "ports": [
            {"containerPort": 15021, "name": "status-port", "protocol": "TCP"},
            {"containerPort": 8080, "protocol": "TCP"},
            {"containerPort": 8443, "protocol": "TCP"},
            {"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/healthz/ready", "port": 15021, "scheme": "HTTP"},
            "initialDelaySeconds": 1,
            "periodSeconds": 2,
            "timeoutSeconds": 1,
            "failureThreshold": 30,
        },
        "resources": g["resources"],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "runAsGroup": 1337,
            "runAsNonRoot": True,
            "runAsUser": 1337,
        },
        "volumeMounts": [
            {"mountPath": "/var/run/secrets/istio", "name": "istiod-ca-cert"},
            {"mountPath": "/var/lib/istio/data", "name": "istio-data"},
            {"mountPath": "/etc/istio/proxy", "name": "istio-envoy"},
            {"mountPath": "/var/run/secrets/tokens", "name": "istio-token"},
            {"mountPath": "/etc/istio/pod", "name": "istio-podinfo"},
        ],
    }
    ports = [
        {"name": "http2", "port": 80, "targetPort": 8080, "protocol": "TCP"},
        {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"},
    ]
    if which == "ingress":
        ports.insert(0, {"name": "status-port", "port": 15021, "targetPort": 15021, "protocol": "TCP"})
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": ns, "labels": labels}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {
                "replicas": g["replicas"],
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {
                        "labels": pod_labels,
                        "annotations": {
                            "prometheus.io/port": "15020",
                            "prometheus.io/scrape": "true",
                            "prometheus.io/path": "/stats/prometheus",
                            "sidecar.istio.io/inject": "false",
                        },
                    },
                    "spec": {
                        "serviceAccountName": sa,
                        "securityContext": {"fsGroup": 1337},
                        "containers": [container],
                        "volumes": sidecar_volumes({}),
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"type": g["serviceType"], "selector": labels, "ports": ports},
        },
    ]
