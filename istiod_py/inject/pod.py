"""Injecting one pod (metadata + spec): the same function serves the webhook
(a Pod) and `kube-inject` (a workload's pod template), so both store the same
pod. Ordering as Istio's injector: `istio-init` last among init containers
(user init containers run before traffic is captured), `istio-proxy` last among
containers (`kubectl exec/logs` default to the app)."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from . import probes, template
from .policy import REV, STATUS
from .template import INIT, PROXY, InjectionError, WorkloadMeta
from .values import InjectionValues

TLS_MODE = "security.istio.io/tlsMode"
CANONICAL_NAME = "service.istio.io/canonical-name"
CANONICAL_REVISION = "service.istio.io/canonical-revision"
DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"
DEFAULT_LOGS = "kubectl.kubernetes.io/default-logs-container"
MERGE_METRICS = "prometheus.io/merge-metrics"

__all__ = ["InjectionError", "WorkloadMeta", "inject_pod", "workload_of_pod"]


def workload_of_pod(meta: Mapping[str, Any], namespace: str) -> WorkloadMeta:
    """The pod's controller as Istio names it: a ReplicaSet whose name is the
    Deployment's plus `-<pod-template-hash>` is its Deployment; a Job named by
    a CronJob (`<cronjob>-<digits>`) is the CronJob; otherwise the owner itself,
    or the pod (its generateName without the trailing dash, or its name)."""
    labels = meta.get("labels") or {}
    owners = [o for o in meta.get("ownerReferences") or [] if o.get("controller")]
    if owners:
        o = owners[0]
        name, kind, api = str(o.get("name", "")), str(o.get("kind", "")), str(o.get("apiVersion", ""))
        h = labels.get("pod-template-hash")
        if kind == "ReplicaSet" and h and name.endswith("-" + h):
            return WorkloadMeta(name[: -len(h) - 1], namespace, "Deployment", "apps/v1")
        if kind == "Job":
            base, _, suffix = name.rpartition("-")
            if base and suffix.isdigit():
                return WorkloadMeta(base, namespace, "CronJob", "batch/v1")
        return WorkloadMeta(name, namespace, kind, api)
    gen = str(meta.get("generateName") or "")
    name = gen.rstrip("-") if gen else str(meta.get("name") or "")
    return WorkloadMeta(name, namespace, "Pod", "v1")


def _status(pod_spec: Mapping[str, Any], values: InjectionValues) -> str:
    return json.dumps(
        {
            "initContainers": [c["name"] for c in pod_spec.get("initContainers") or [] if c["name"] == INIT],
            "containers": [PROXY],
            "volumes": [v["name"] for v in template.volumes({})],
            "imagePullSecrets": None,
            "revision": values.revision or "default",
        },
        separators=(",", ":"),
    )


def _merge_metrics(annotations: Mapping[str, str], default: bool) -> bool:
    """`prometheus.io/merge-metrics` on the pod over the installation's enablePrometheusMerge;
    a value that is not a boolean is ignored, as Istio's injector ignores it."""
    raw = annotations.get(MERGE_METRICS, "").strip().lower()
    if raw in ("1", "t", "true"):
        return True
    if raw in ("0", "f", "false"):
        return False
    return default


def _upsert(items: list[dict[str, Any]], new: dict[str, Any]) -> list[dict[str, Any]]:
    """Replace the item of the same name (a re-injected pod keeps one copy)."""
    return [i for i in items if i.get("name") != new["name"]] + [new]


def inject_pod(pod: Mapping[str, Any], values: InjectionValues, wl: WorkloadMeta) -> dict[str, Any]:
    """The pod (`{"metadata":..., "spec":...}`) with the sidecar; the input is not changed."""
    out = copy.deepcopy(dict(pod))
    meta: dict[str, Any] = out.setdefault("metadata", {})
    spec: dict[str, Any] = out.setdefault("spec", {})
    annotations: dict[str, str] = {str(k): str(v) for k, v in (meta.get("annotations") or {}).items()}
    labels: dict[str, str] = dict(meta.get("labels") or {})
    mode = template.interception_mode(annotations, values)

    containers = [c for c in spec.get("containers") or [] if c.get("name") != PROXY]
    probers: dict[str, Any] = {}
    if probes.rewrite_enabled(annotations, values.rewrite_app_probers):
        containers, probers = probes.rewrite(containers)
    proxy = template.proxy_container(spec, annotations, wl, values, mode, probers)
    spec["containers"] = [*containers, proxy]
    inits = [c for c in spec.get("initContainers") or [] if c.get("name") != INIT]
    if mode != "NONE":
        inits.append(template.init_container(annotations, values, mode))
    if inits:
        spec["initContainers"] = inits
    vols: list[dict[str, Any]] = list(spec.get("volumes") or [])
    for v in template.volumes(annotations):
        vols = _upsert(vols, v)
    spec["volumes"] = vols

    labels.setdefault(TLS_MODE, "istio")
    labels.setdefault(
        CANONICAL_NAME, labels.get("app.kubernetes.io/name") or labels.get("app") or wl.name or "istio-proxy"
    )
    labels.setdefault(CANONICAL_REVISION, labels.get("app.kubernetes.io/version") or labels.get("version") or "latest")
    meta["labels"] = labels
    if containers:
        annotations.setdefault(DEFAULT_CONTAINER, str(containers[0].get("name")))
        annotations.setdefault(DEFAULT_LOGS, annotations[DEFAULT_CONTAINER])
    annotations[REV] = values.revision or "default"
    annotations["sidecar.istio.io/interceptionMode"] = mode
    if (
        _merge_metrics(annotations, values.enable_prometheus_merge)
        and annotations.get("prometheus.io/scrape") != "false"
    ):
        # The agent merges the app's and Envoy's metrics on 15020, as Istio's; the
        # app's own scrape settings go to the agent (ISTIO_PROMETHEUS_ANNOTATIONS,
        # Istio's JSON: all three keys, "" for an absent one).
        app_scrape = {k: annotations.get(f"prometheus.io/{k}", "") for k in ("scrape", "path", "port")}
        if any(app_scrape.values()) and app_scrape["port"] != "15020":
            proxy["env"].append({"name": "ISTIO_PROMETHEUS_ANNOTATIONS", "value": json.dumps(app_scrape)})
        annotations["prometheus.io/scrape"] = "true"
        annotations["prometheus.io/port"] = "15020"
        annotations["prometheus.io/path"] = "/stats/prometheus"
    annotations[STATUS] = _status(spec, values)
    meta["annotations"] = annotations
    return out
