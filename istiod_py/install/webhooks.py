"""The webhook configurations: `istio-sidecar-injector` (MutatingWebhookConfiguration)
with Istio's four selectors for the default revision (namespace label
`istio-injection=enabled`; namespace `istio.io/rev`; pod `istio.io/rev`; pod
`sidecar.istio.io/inject=true` in an unlabelled namespace — a pod labelled
`sidecar.istio.io/inject=false` is never sent), and the validator for Istio's
API groups. Both call istiod's Service on 443 (-> 15017).

`caBundle` is left empty here: the control plane's CA is created at its first
start, so istiod patches its root certificate into both configurations once it
is serving (istiod_py/inject/cabundle.py), as Istio's webhook controller does."""

from __future__ import annotations

from typing import Any

INJECT_RULES = [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]


def _client(v: dict[str, Any], path: str) -> dict[str, Any]:
    name = f"istiod-{v['revision']}" if v["revision"] else "istiod"
    return {"service": {"name": name, "namespace": v["namespace"], "path": path, "port": 443}}


def _exprs(*items: tuple[str, str, list[str] | None]) -> dict[str, Any]:
    out = []
    for key, op, vals in items:
        e: dict[str, Any] = {"key": key, "operator": op}
        if vals is not None:
            e["values"] = vals
        out.append(e)
    return {"matchExpressions": out}


def mutating_name(v: dict[str, Any]) -> str:
    return f"istio-sidecar-injector-{v['revision']}" if v["revision"] else "istio-sidecar-injector"


def validating_name(v: dict[str, Any]) -> str:
    return f"istio-validator-{v['revision'] + '-' if v['revision'] else ''}{v['namespace']}"


def mutating(v: dict[str, Any]) -> dict[str, Any]:
    rev = v["revision"] or "default"
    no_false = ("sidecar.istio.io/inject", "NotIn", ["false"])
    selectors = [
        ("rev.namespace.sidecar-injector.istio.io",
         _exprs(("istio.io/rev", "In", [rev]), ("istio-injection", "DoesNotExist", None)),
         _exprs(no_false)),
        ("rev.object.sidecar-injector.istio.io",
         _exprs(("istio.io/rev", "DoesNotExist", None), ("istio-injection", "DoesNotExist", None)),
         _exprs(no_false, ("istio.io/rev", "In", [rev]))),
    ]  # fmt: skip
    if not v["revision"]:  # the default revision also answers the revision-less labels
        selectors += [
            ("namespace.sidecar-injector.istio.io", _exprs(("istio-injection", "In", ["enabled"])), _exprs(no_false)),
            ("object.sidecar-injector.istio.io",
             _exprs(("istio-injection", "DoesNotExist", None), ("istio.io/rev", "DoesNotExist", None)),
             _exprs(("sidecar.istio.io/inject", "In", ["true"]), ("istio.io/rev", "DoesNotExist", None))),
        ]  # fmt: skip
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": mutating_name(v), "labels": {"app": "sidecar-injector", "istio.io/rev": rev}},
        "webhooks": [
            {
                "name": name,
                "clientConfig": _client(v, "/inject"),
                "rules": INJECT_RULES,
                "namespaceSelector": ns_sel,
                "objectSelector": obj_sel,
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "reinvocationPolicy": "Never",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 10,
            }
            for name, ns_sel, obj_sel in selectors
        ],
    }


def validating(v: dict[str, Any]) -> dict[str, Any]:
    rev = v["revision"] or "default"
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": validating_name(v), "labels": {"app": "istiod", "istio.io/rev": rev}},
        "webhooks": [
            {
                "name": "rev.validation.istio.io",
                "clientConfig": _client(v, "/validate"),
                "rules": [
                    {
                        "operations": ["CREATE", "UPDATE"],
                        "apiGroups": ["networking.istio.io", "security.istio.io", "telemetry.istio.io"],
                        "apiVersions": ["*"],
                        "resources": ["*"],
                    }
                ],
                # Ignore until istiod serves (Istio switches it to Fail once its webhook answers).
                "failurePolicy": "Ignore",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 10,
            }
        ],
    }
