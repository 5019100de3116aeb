"""The control plane's Kubernetes objects for a set of install values, in
apply order: CRDs, Namespace, RBAC, the `istio` mesh ConfigMap, the istiod
Deployment and Service, webhook configurations, then gateways.

Names and labels are Istio's (`istiod`, `app: istiod`, `istio: pilot`,
`istio-sidecar-injector`, `istio-ingressgateway`...) because users' selectors,
dashboards and scripts match on them. The injection settings reach the webhook
as INJECT_* environment variables of the istiod container
(inject/values.py), so the webhook and `kube-inject --set ...` inject alike."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from istiod_py.inject.values import InjectionValues

from . import gateways, webhooks

CRD_DIR = Path(__file__).resolve().parents[2] / "deploy" / "crds"
Obj = dict[str, Any]


def injection_values(v: dict[str, Any]) -> InjectionValues:
    proxy = v["global"]["proxy"]
    inj = v["sidecarInjectorWebhook"]
    return replace(
        InjectionValues(),
        hub=v["hub"],
        tag=v["tag"],
        proxy_image=proxy["image"],
        image_pull_policy=v["global"]["imagePullPolicy"],
        istio_namespace=v["namespace"],
        revision=v["revision"],
        cluster_domain=v["global"]["clusterDomain"],
        trust_domain=v["meshConfig"].get("trustDomain", "cluster.local"),
        cluster_id=v["global"]["clusterID"],
        mesh_id=v["global"]["meshID"],
        interception_mode=proxy["interceptionMode"],
        include_ip_ranges=proxy["includeIPRanges"],
        exclude_ip_ranges=proxy["excludeIPRanges"],
        exclude_inbound_ports=proxy["excludeInboundPorts"],
        exclude_outbound_ports=proxy["excludeOutboundPorts"],
        log_level=proxy["logLevel"],
        rewrite_app_probers=bool(inj["rewriteAppHTTPProbe"]),
        enable_prometheus_merge=bool(inj["enablePrometheusMerge"]),
        policy=inj["policy"],
        proxy_resources=proxy["resources"],
    )


def rev_labels(v: dict[str, Any]) -> dict[str, str]:
    return {"istio.io/rev": v["revision"] or "default"}


def istiod_name(v: dict[str, Any]) -> str:
    return f"istiod-{v['revision']}" if v["revision"] else "istiod"


def crds() -> list[Obj]:
    """The CRDs under deploy/crds (generated from the protos by the kube work)."""
    if not CRD_DIR.is_dir():
        return []
    out: list[Obj] = []
    for path in sorted(CRD_DIR.glob("*.yaml")):
        out += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if isinstance(d, dict)]
    return out


RBAC_FILE = Path(__file__).resolve().parents[2] / "deploy" / "kube" / "istiod-rbac.yaml"


def _rbac_rules() -> tuple[list[Obj], list[Obj]]:
    """The ClusterRole and Role rules of deploy/kube/istiod-rbac.yaml: the permissions
    tests/kube/test_rbac.py proves the control plane runs with, kept in one place."""
    docs = [d for d in yaml.safe_load_all(RBAC_FILE.read_text(encoding="utf-8")) if isinstance(d, dict)]
    cluster = next(d for d in docs if d["kind"] == "ClusterRole")["rules"]
    ns = next(d for d in docs if d["kind"] == "Role")["rules"]
    return cluster, ns


def rbac(v: dict[str, Any]) -> list[Obj]:
    ns, name = v["namespace"], istiod_name(v)
    labels = {"app": "istiod", **rev_labels(v)}
    cluster_name = f"{name}-clusterrole-{ns}"
    cluster_rules, ns_rules = _rbac_rules()
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns, "labels": labels}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": cluster_name, "labels": labels},
            "rules": cluster_rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": cluster_name, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "rules": ns_rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
        },
    ]


def mesh_configmap(v: dict[str, Any]) -> Obj:
    name = f"istio-{v['revision']}" if v["revision"] else "istio"
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": v["namespace"], "labels": {"istio.io/rev": v["revision"] or "default"}},
        "data": {
            "mesh": yaml.safe_dump(v["meshConfig"], sort_keys=True),
            "meshNetworks": "networks: {}\n",
        },
    }


def _env(name: str, path: str) -> Obj:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def istiod_deployment(v: dict[str, Any]) -> Obj:
    ns, name, p = v["namespace"], istiod_name(v), v["pilot"]
    selector = {"app": "istiod", "istio": "pilot", **rev_labels(v)}
    env: list[Obj] = [_env("POD_NAME", "metadata.name"), _env("POD_NAMESPACE", "metadata.namespace")]
    env += [{"name": "REVISION", "value": v["revision"] or "default"}]
    env += [{"name": k, "value": s} for k, s in sorted(injection_values(v).to_env().items())]
    env += [{"name": str(k), "value": str(s)} for k, s in sorted(p["env"].items())]
    mesh_name = f"istio-{v['revision']}" if v["revision"] else "istio"
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": selector},
        "spec": {
            "replicas": p["replicas"],
            "strategy": {"rollingUpdate": {"maxSurge": "100%", "maxUnavailable": "25%"}},
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {
                    "labels": {**selector, "sidecar.istio.io/inject": "false"},
                    "annotations": {"prometheus.io/port": "15014", "prometheus.io/scrape": "true"},
                },
                "spec": {
                    "serviceAccountName": name,
                    "securityContext": {"fsGroup": 1337},
                    "containers": [
                        {
                            "name": "discovery",
                            "image": f"{v['hub']}/{p['image']}:{v['tag']}",
                            "imagePullPolicy": v["global"]["imagePullPolicy"],
                            "args": [
                                "serve",
                                "--kubeconfig",
                                "in-cluster",
                                "--listen-address",
                                "0.0.0.0",
                                "--mesh-config",
                                "/etc/istio/config/mesh",
                                "--ca-dir",
                                "/var/run/istiod/ca",
                                "--log-level",
                                p["logLevel"],
                            ],
                            "ports": [
                                {"containerPort": 15010, "name": "grpc-xds", "protocol": "TCP"},
                                {"containerPort": 15012, "name": "tls-xds", "protocol": "TCP"},
                                {"containerPort": 15014, "name": "http-monitoring", "protocol": "TCP"},
                                {"containerPort": 15017, "name": "https-webhooks", "protocol": "TCP"},
                            ],
                            "readinessProbe": {
                                "httpGet": {"path": "/ready", "port": 15014},
                                "initialDelaySeconds": 1,
                                "periodSeconds": 3,
                                "timeoutSeconds": 5,
                            },
                            "env": env,
                            "resources": p["resources"],
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                                "readOnlyRootFilesystem": True,
                                "runAsGroup": 1337,
                                "runAsNonRoot": True,
                                "runAsUser": 1337,
                            },
                            "volumeMounts": [
                                {"name": "config-volume", "mountPath": "/etc/istio/config"},
                                {"name": "ca-dir", "mountPath": "/var/run/istiod/ca"},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "config-volume", "configMap": {"name": mesh_name}},
                        {"name": "ca-dir", "emptyDir": {"medium": "Memory"}},
                    ],
                },
            },
        },
    }


def istiod_service(v: dict[str, Any]) -> Obj:
    labels = {"app": "istiod", "istio": "pilot", **rev_labels(v)}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": istiod_name(v), "namespace": v["namespace"], "labels": labels},
        "spec": {
            "selector": labels,
            "ports": [
                {"name": "grpc-xds", "port": 15010, "protocol": "TCP"},
                {"name": "https-dns", "port": 15012, "protocol": "TCP"},
                {"name": "https-webhook", "port": 443, "targetPort": 15017, "protocol": "TCP"},
                {"name": "http-monitoring", "port": 15014, "protocol": "TCP"},
                {"name": "https-webhooks", "port": 15017, "protocol": "TCP"},
            ],
        },
    }


def render(v: dict[str, Any]) -> list[Obj]:
    comps = v["components"]
    out: list[Obj] = []
    if comps["base"]:
        out += crds()
    if comps["pilot"] or comps["ingressGateway"] or comps["egressGateway"]:
        out.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": v["namespace"]}})
    if comps["pilot"]:
        out += rbac(v)
        out.append(mesh_configmap(v))
        out += [istiod_deployment(v), istiod_service(v)]
        out += [webhooks.mutating(v), webhooks.validating(v)]
    if comps["ingressGateway"]:
        out += gateways.gateway(v, "ingress", injection_values(v))
    if comps["egressGateway"]:
        out += gateways.gateway(v, "egress", injection_values(v))
    return out


class _NoAliases(yaml.SafeDumper):
    """Objects share label dicts; a manifest spells each out (no &id001 anchors)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(objs: list[Obj]) -> str:
    return yaml.dump_all(objs, Dumper=_NoAliases, sort_keys=False, default_flow_style=False)
