"""The sidecar template: the `istio-init` init container (the capture step,
`istiod-py iptables` with istio-iptables' flags), the `istio-proxy` container
(`istiod-py agent` with Istio's environment), and their volumes — the objects
Istio's injection-template.yaml renders, with the annotations Istio reads.

Annotations honoured (pod annotation overrides the installation's value):
  sidecar.istio.io/interceptionMode       REDIRECT | TPROXY | NONE (no init container)
  sidecar.istio.io/proxyImage             image of both injected containers
  sidecar.istio.io/proxyCPU, proxyMemory, proxyCPULimit, proxyMemoryLimit
  sidecar.istio.io/logLevel (Envoy's level), rewriteAppHTTPProbers
  sidecar.istio.io/userVolume, userVolumeMount   (JSON maps name -> volume / mount)
  readiness.status.sidecar.istio.io/initialDelaySeconds, periodSeconds, failureThreshold
  traffic.sidecar.istio.io/includeOutboundIPRanges, excludeOutboundIPRanges,
    includeInboundPorts, excludeInboundPorts, includeOutboundPorts,
    excludeOutboundPorts, kubevirtInterfaces, excludeInterfaces
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .values import InjectionValues

PROXY = "istio-proxy"
INIT = "istio-init"
SC = "sidecar.istio.io/"
TRAFFIC = "traffic.sidecar.istio.io/"
READINESS = "readiness.status.sidecar.istio.io/"
# Where the agent finds what the volumes below mount.
ROOT_CERT = "/var/run/secrets/istio/root-cert.pem"
TOKEN = "/var/run/secrets/tokens/istio-token"
PODINFO = "/etc/istio/pod"
PROXY_DIR = "/etc/istio/proxy"


class InjectionError(ValueError):
    """A pod annotation the injector cannot use (names the annotation)."""


@dataclass(frozen=True)
class WorkloadMeta:
    """The pod's controller as Istio's injector names it (DeploymentMeta/TypeMeta)."""

    name: str
    namespace: str
    kind: str = ""
    api_version: str = ""

    @property
    def owner(self) -> str:
        if not (self.kind and self.api_version):
            return ""
        return f"kubernetes://apis/{self.api_version}/namespaces/{self.namespace}/{self.kind.lower()}s/{self.name}"


def interception_mode(annotations: Mapping[str, str], values: InjectionValues) -> str:
    mode = str(annotations.get(SC + "interceptionMode", values.interception_mode)).upper()
    if mode not in ("REDIRECT", "TPROXY", "NONE"):
        raise InjectionError(f"annotation {SC}interceptionMode: {mode!r} is not REDIRECT, TPROXY or NONE")
    return mode


def _ann(annotations: Mapping[str, str], key: str, default: str) -> str:
    return str(annotations.get(key, default))


def capture_args(annotations: Mapping[str, str], values: InjectionValues, mode: str) -> list[str]:
    """`istiod-py iptables` flags, in istio-iptables' order and spelling."""
    excl_in = _ann(annotations, TRAFFIC + "excludeInboundPorts", values.exclude_inbound_ports)
    args = [
        "iptables",
        "-p", "15001",
        "-z", "15006",
        "-u", "1337",
        "-m", mode,
        "-i", _ann(annotations, TRAFFIC + "includeOutboundIPRanges", values.include_ip_ranges),
        "-x", _ann(annotations, TRAFFIC + "excludeOutboundIPRanges", values.exclude_ip_ranges),
        "-b", _ann(annotations, TRAFFIC + "includeInboundPorts", "*"),
        "-d", ",".join(p for p in ("15090", "15021", "15020", *excl_in.split(",")) if p.strip()),
    ]  # fmt: skip
    excl_out = _ann(annotations, TRAFFIC + "excludeOutboundPorts", values.exclude_outbound_ports)
    for flag, value in (
        ("-q", annotations.get(TRAFFIC + "includeOutboundPorts", "")),
        ("-o", excl_out),
        ("-k", annotations.get(TRAFFIC + "kubevirtInterfaces", "")),
        ("-c", annotations.get(TRAFFIC + "excludeInterfaces", "")),
    ):
        if value:
            args += [flag, str(value)]
    return args


def resources(annotations: Mapping[str, str], values: InjectionValues) -> dict[str, Any]:
    keys = {"proxyCPU": ("requests", "cpu"), "proxyMemory": ("requests", "memory"),
            "proxyCPULimit": ("limits", "cpu"), "proxyMemoryLimit": ("limits", "memory")}  # fmt: skip
    if not any(SC + k in annotations for k in keys):
        return {k: dict(v) for k, v in values.proxy_resources.items()}
    out: dict[str, dict[str, str]] = {}
    for k, (section, res) in keys.items():
        if SC + k in annotations:
            out.setdefault(section, {})[res] = str(annotations[SC + k])
    return out


def _json_annotation(annotations: Mapping[str, str], key: str) -> dict[str, Any]:
    if key not in annotations:
        return {}
    try:
        data = json.loads(annotations[key])
    except ValueError as e:
        raise InjectionError(f"annotation {key}: not JSON ({e})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise InjectionError(f"annotation {key}: expected a JSON object of name -> object")
    return data


def init_container(annotations: Mapping[str, str], values: InjectionValues, mode: str) -> dict[str, Any]:
    return {
        "name": INIT,
        "image": _ann(annotations, SC + "proxyImage", values.image()),
        "imagePullPolicy": values.image_pull_policy,
        "args": capture_args(annotations, values, mode),
        "resources": resources(annotations, values),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
            "readOnlyRootFilesystem": False,
            "runAsGroup": 0,
            "runAsNonRoot": False,
            "runAsUser": 0,
        },
    }


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def _int_ann(annotations: Mapping[str, str], key: str, default: int) -> int:
    raw = annotations.get(key)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InjectionError(f"annotation {key}: {raw!r} is not an integer") from None


def proxy_container(
    spec: Mapping[str, Any],
    annotations: Mapping[str, str],
    wl: WorkloadMeta,
    values: InjectionValues,
    mode: str,
    probers: Mapping[str, Any],
) -> dict[str, Any]:
    app_containers = [c for c in spec.get("containers") or [] if c.get("name") != PROXY]
    # Protocol defaulted as the API server defaults it before calling the webhook,
    # so kube-inject (which sees the manifest) writes the same value.
    pod_ports = [{**p, "protocol": p.get("protocol") or "TCP"} for c in app_containers for p in c.get("ports") or []]
    env: list[dict[str, Any]] = [
        {"name": "PILOT_CERT_PROVIDER", "value": "istiod"},
        {"name": "CA_ADDR", "value": values.discovery_address},
        _field_env("POD_NAME", "metadata.name"),
        _field_env("POD_NAMESPACE", "metadata.namespace"),
        _field_env("INSTANCE_IP", "status.podIP"),
        _field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        _field_env("HOST_IP", "status.hostIP"),
        {"name": "ISTIO_CPU_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "0"}}},
        {"name": "ISTIO_META_POD_PORTS", "value": json.dumps(pod_ports, separators=(",", ":"), sort_keys=True)},
        {"name": "ISTIO_META_APP_CONTAINERS", "value": ",".join(str(c.get("name")) for c in app_containers)},
        {"name": "ISTIO_META_CLUSTER_ID", "value": values.cluster_id},
        _field_env("ISTIO_META_NODE_NAME", "spec.nodeName"),
        {"name": "ISTIO_META_INTERCEPTION_MODE", "value": mode},
        {"name": "ISTIO_META_WORKLOAD_NAME", "value": wl.name},
        {"name": "ISTIO_META_MESH_ID", "value": values.mesh_id},
        {"name": "TRUST_DOMAIN", "value": values.trust_domain},
    ]
    if wl.owner:
        env.append({"name": "ISTIO_META_OWNER", "value": wl.owner})
    if probers:
        env.append({"name": "ISTIO_KUBE_APP_PROBERS", "value": json.dumps(dict(probers), sort_keys=True)})
    tproxy = mode == "TPROXY"
    args = [
        "agent",
        "--type", "sidecar",
        "--ip", "$(INSTANCE_IP)",
        "--name", "$(POD_NAME)",
        "--namespace", "$(POD_NAMESPACE)",
        "--service-account", "$(SERVICE_ACCOUNT)",
        "--workload-name", wl.name,
        "--labels-file", PODINFO + "/labels",
        "--interception-mode", mode,
        "--discovery-address", values.discovery_address,
        "--ca-address", values.discovery_address,
        "--xds-tls",
        "--xds-server-name", values.istiod_service,
        "--root-cert", ROOT_CERT,
        "--token-file", TOKEN,
        "--trust-domain", values.trust_domain,
        "--workdir", PROXY_DIR,
        "--envoy-log-level", _ann(annotations, SC + "logLevel", values.log_level),
        # the kubelet probes the pod's address: the status ports listen on all of the pod's
        "--status-address", "0.0.0.0",
        "--status-port", "15020",
        "--readiness-port", "15021",
        # Envoy's own Prometheus listener, the container's http-envoy-prom port (as Istio's bootstrap)
        "--stats-port", "15090",
    ]  # fmt: skip
    mounts: list[dict[str, Any]] = [
        {"mountPath": "/var/run/secrets/istio", "name": "istiod-ca-cert"},
        {"mountPath": "/var/lib/istio/data", "name": "istio-data"},
        {"mountPath": PROXY_DIR, "name": "istio-envoy"},
        {"mountPath": "/var/run/secrets/tokens", "name": "istio-token"},
        {"mountPath": PODINFO, "name": "istio-podinfo"},
    ]
    for name, mount in _json_annotation(annotations, SC + "userVolumeMount").items():
        mounts.append({"name": name, **mount})
    readiness = {
        "httpGet": {"path": "/healthz/ready", "port": 15021, "scheme": "HTTP"},
        "initialDelaySeconds": _int_ann(annotations, READINESS + "initialDelaySeconds", values.readiness_initial_delay),
        "periodSeconds": _int_ann(annotations, READINESS + "periodSeconds", values.readiness_period),
        "timeoutSeconds": 3,
        "failureThreshold": _int_ann(annotations, READINESS + "failureThreshold", values.readiness_failure_threshold),
    }
    return {
        "name": PROXY,
        "image": _ann(annotations, SC + "proxyImage", values.image()),
        "imagePullPolicy": values.image_pull_policy,
        "args": args,
        "env": env,
        "ports": [{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}],
        "readinessProbe": readiness,
        "startupProbe": {
            "httpGet": {"path": "/healthz/ready", "port": 15021, "scheme": "HTTP"},
            "initialDelaySeconds": 0,
            "periodSeconds": 1,
            "timeoutSeconds": 3,
            "failureThreshold": 600,
        },
        "resources": resources(annotations, values),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            # TPROXY's transparent sockets need NET_ADMIN and UID 0 (GID 1337 keeps the capture exemption).
            "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]} if tproxy else {"drop": ["ALL"]},
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "runAsGroup": 1337,
            "runAsNonRoot": not tproxy,
            "runAsUser": 0 if tproxy else 1337,
        },
        "volumeMounts": mounts,
    }


def volumes(annotations: Mapping[str, str]) -> list[dict[str, Any]]:
    vols: list[dict[str, Any]] = [
        {"name": "istio-envoy", "emptyDir": {"medium": "Memory"}},
        {"name": "istio-data", "emptyDir": {}},
        {
            "name": "istio-podinfo",
            "downwardAPI": {
                "items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
                ]
            },
        },
        {
            "name": "istio-token",
            "projected": {
                "sources": [
                    {"serviceAccountToken": {"audience": "istio-ca", "expirationSeconds": 43200, "path": "istio-token"}}
                ]
            },
        },
        {"name": "istiod-ca-cert", "configMap": {"name": "istio-ca-root-cert"}},
    ]
    for name, vol in _json_annotation(annotations, SC + "userVolume").items():
        vols.append({"name": name, **vol})
    return vols
