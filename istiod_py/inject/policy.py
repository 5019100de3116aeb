"""Whether a pod gets a sidecar, decided as Istio's injector decides it.

The MutatingWebhookConfiguration's selectors pick the namespaces (label
`istio-injection=enabled`, or `istio.io/rev=<revision>`) and exclude pods
labelled `sidecar.istio.io/inject=false`; the API server never sends the
rest. `injection_required` is the injector's own check on what it is sent:
host-network pods and the system namespaces never get one; the pod's
`sidecar.istio.io/inject` label wins over the annotation of the same name;
"true"/"yes"/"y"/"on" ask for a sidecar, any other value refuses it; without
either the policy decides ("enabled": inject). `namespace_selected` mirrors the
webhook configuration's selectors for callers that see namespace labels (tests,
a node program)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

INJECT = "sidecar.istio.io/inject"
STATUS = "sidecar.istio.io/status"
NS_INJECTION = "istio-injection"
REV = "istio.io/rev"
IGNORED_NAMESPACES = frozenset({"kube-system", "kube-public"})
_TRUE = frozenset({"y", "yes", "true", "on"})


def _explicit(meta: Mapping[str, Any]) -> bool | None:
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    for source in (labels, annotations):  # the label wins
        if INJECT in source:
            return str(source[INJECT]).strip().lower() in _TRUE
    return None


def injection_required(meta: Mapping[str, Any], spec: Mapping[str, Any], namespace: str, policy: str) -> bool:
    if spec.get("hostNetwork"):
        return False
    if namespace in IGNORED_NAMESPACES:
        return False
    if STATUS in (meta.get("annotations") or {}):
        return False  # already injected
    explicit = _explicit(meta)
    if explicit is not None:
        return explicit
    return policy != "disabled"


def namespace_selected(ns_labels: Mapping[str, str], pod_labels: Mapping[str, str], revision: str = "") -> bool:
    """The default webhook configuration's selectors (namespace.sidecar-injector,
    rev.namespace, rev.object and object webhooks), for the revision given."""
    rev = revision or "default"
    pod_inject = pod_labels.get(INJECT)
    if pod_inject == "false":
        return False
    if NS_INJECTION in ns_labels:
        return ns_labels[NS_INJECTION] == "enabled" and not revision
    if REV in ns_labels:
        return ns_labels[REV] == rev
    if REV in pod_labels:
        return pod_labels[REV] == rev
    return pod_inject == "true" and not revision
