"""`kube-inject`: the webhook's injection applied offline to manifests
(`istioctl kube-inject`). Each pod template of a Deployment, StatefulSet,
DaemonSet, ReplicaSet, ReplicationController, Job, CronJob, or a Pod itself (and
every item of a List) goes through the same `inject_pod` as the webhook, with
the workload named as the webhook will name the pods' controller; other
documents pass through unchanged. Namespace selection does not apply (the
user asked for injection) but a pod's `sidecar.istio.io/inject: "false"` does."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from .pod import inject_pod
from .policy import injection_required
from .template import InjectionError, WorkloadMeta
from .values import InjectionValues

TEMPLATED = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job"})


def _template_holder(obj: dict[str, Any]) -> dict[str, Any] | None:
    kind = obj.get("kind")
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return None
    if kind in TEMPLATED:
        return spec
    if kind == "CronJob":
        job = (spec.get("jobTemplate") or {}).get("spec")
        return job if isinstance(job, dict) else None
    return None


def inject_object(obj: Any, values: InjectionValues, where: str = "", namespace: str = "") -> Any:
    if not isinstance(obj, dict):
        return obj
    obj = copy.deepcopy(obj)
    kind = obj.get("kind")
    if kind == "List":
        return {**obj, "items": [inject_object(i, values, where, namespace) for i in obj.get("items") or []]}
    meta = obj.get("metadata") or {}
    # The namespace the objects will live in (ISTIO_META_OWNER names it): the
    # document's, else the one given (`kubectl apply -n`), else default.
    namespace = str(meta.get("namespace") or namespace or "default")
    name = str(meta.get("name") or "")
    wl = WorkloadMeta(name, namespace, str(kind or ""), str(obj.get("apiVersion") or ""))
    label = f"{where}{kind} {namespace}/{name}"
    try:
        if kind == "Pod":
            if not injection_required(meta, obj.get("spec") or {}, namespace, "enabled"):
                return obj
            return {**obj, **inject_pod(obj, values, wl)}
        holder = _template_holder(obj)
        if holder is None or not isinstance(holder.get("template"), dict):
            return obj
        tmpl = holder["template"]
        if not injection_required(tmpl.get("metadata") or {}, tmpl.get("spec") or {}, namespace, "enabled"):
            return obj
        holder["template"] = inject_pod(tmpl, values, wl)
        return obj
    except InjectionError as e:
        raise InjectionError(f"{label}: {e}") from None


def kube_inject(text: str, values: InjectionValues, where: str = "", namespace: str = "") -> str:
    """Multi-document YAML in, the same documents with sidecars out."""
    out = []
    for i, doc in enumerate(yaml.safe_load_all(text)):
        if doc is None:
            continue
        out.append(inject_object(doc, values, f"{where}document {i + 1}: ", namespace))
    return yaml.dump_all(out, Dumper=_NoAliases, sort_keys=False, default_flow_style=False)


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True
