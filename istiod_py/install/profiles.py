"""Installation profiles and `--set` values, as istioctl's: `default` (istiod
and the ingress gateway), `demo` (plus the egress gateway, access logs on,
small resource requests), `minimal` (istiod only), `empty` (nothing unless
`--set` enables it). A value path is dotted (`pilot.replicas=2`,
`meshConfig.accessLogFile=/dev/stdout`); istioctl's `values.` and `spec.`
prefixes are accepted. A path the profile does not know is an error naming it,
except under the free-form maps (`meshConfig.*`, `pilot.env.*`,
`global.proxy.resources.*`...)."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import yaml


class ValuesError(ValueError):
    """A bad `--set` or profile name (the message names it)."""


def _res(cpu: str, memory: str, limit_cpu: str = "2000m", limit_memory: str = "1024Mi") -> dict[str, Any]:
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": limit_cpu, "memory": limit_memory}}


BASE: dict[str, Any] = {
    "profile": "default",
    "hub": "ghcr.io/istiod-py",
    "tag": "latest",
    "revision": "",
    "namespace": "istio-system",
    "components": {"base": True, "pilot": True, "ingressGateway": True, "egressGateway": False},
    "pilot": {
        "image": "pilot",
        "replicas": 1,
        "resources": {"requests": {"cpu": "500m", "memory": "2048Mi"}},
        "env": {},
        "logLevel": "info",
    },
    "global": {
        "imagePullPolicy": "IfNotPresent",
        "meshID": "cluster.local",
        "clusterID": "Kubernetes",
        "clusterDomain": "cluster.local",
        "proxy": {
            "image": "proxy",
            "logLevel": "warning",
            "interceptionMode": "REDIRECT",
            "includeIPRanges": "*",
            "excludeIPRanges": "",
            "excludeInboundPorts": "",
            "excludeOutboundPorts": "",
            "resources": _res("100m", "128Mi"),
        },
    },
    "sidecarInjectorWebhook": {"rewriteAppHTTPProbe": True, "enablePrometheusMerge": True, "policy": "enabled"},
    "meshConfig": {
        "accessLogFile": "",
        "rootNamespace": "istio-system",
        "trustDomain": "cluster.local",
        "defaultConfig": {"discoveryAddress": "istiod.istio-system.svc:15012"},
    },
    "gateways": {
        "ingress": {"replicas": 1, "serviceType": "LoadBalancer", "resources": _res("100m", "128Mi")},
        "egress": {"replicas": 1, "serviceType": "ClusterIP", "resources": _res("100m", "128Mi")},
    },
}

# Overlays on BASE, as Istio's profiles overlay its default.
PROFILES: dict[str, dict[str, Any]] = {
    "default": {},
    "demo": {
        "components": {"egressGateway": True},
        "pilot": {"resources": {"requests": {"cpu": "10m", "memory": "100Mi"}}},
        "global": {"proxy": {"resources": _res("10m", "40Mi")}},
        "meshConfig": {"accessLogFile": "/dev/stdout"},
        "gateways": {"ingress": {"resources": _res("10m", "40Mi")}, "egress": {"resources": _res("10m", "40Mi")}},
    },
    "minimal": {"components": {"ingressGateway": False}},
    "empty": {"components": {"base": False, "pilot": False, "ingressGateway": False}},
}

# Maps whose keys are the user's: any key may be set below them.
FREE_FORM = ("meshConfig", "pilot.env", "pilot.resources", "global.proxy.resources", "gateways.ingress.resources",
             "gateways.egress.resources")  # fmt: skip


def merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for k, v in overlay.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _coerce(raw: str, current: Any, path: str) -> Any:
    if isinstance(current, bool) or (current is None and raw in ("true", "false")):
        if raw not in ("true", "false"):
            raise ValuesError(f"--set {path}={raw}: expected true or false")
        return raw == "true"
    if isinstance(current, int):
        try:
            return int(raw)
        except ValueError:
            raise ValuesError(f"--set {path}={raw}: expected an integer") from None
    if isinstance(current, Mapping):
        raise ValuesError(f"--set {path}={raw}: {path} is a map; set one of its keys ({', '.join(current)})")
    if current is None:
        try:
            parsed = yaml.safe_load(raw)
        except yaml.YAMLError:
            return raw
        return parsed if isinstance(parsed, (int, float, list, dict)) and not isinstance(parsed, bool) else raw
    return raw


def _free(path: str) -> bool:
    return any(path == f or path.startswith(f + ".") for f in FREE_FORM)


def apply_set(values: dict[str, Any], assignment: str) -> None:
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise ValuesError(f"--set {assignment!r}: expected KEY=VALUE")
    for prefix in ("spec.values.", "values.", "spec."):
        if key.startswith(prefix):
            key = key[len(prefix) :]
            break
    parts = key.split(".")
    node: Any = values
    for i, part in enumerate(parts[:-1]):
        sub = ".".join(parts[: i + 1])
        if not isinstance(node.get(part), dict):
            if part in node or not _free(sub):
                raise ValuesError(f"--set {key}: unknown value {sub!r}")
            node[part] = {}
        node = node[part]
    last = parts[-1]
    if last not in node and not _free(key):
        known = ", ".join(sorted(node))
        raise ValuesError(f"--set {key}: unknown value (known here: {known})")
    node[last] = _coerce(raw, node.get(last), key)


def resolve(sets: Iterable[str]) -> dict[str, Any]:
    """The values for `--set` assignments: the profile first (`profile=NAME`), then the rest in order."""
    sets = list(sets)
    profile = "default"
    for s in sets:
        k, _, v = s.partition("=")
        if k in ("profile", "spec.profile"):
            profile = v
    if profile not in PROFILES:
        raise ValuesError(f"--set profile={profile}: unknown profile (known: {', '.join(PROFILES)})")
    values = merge(BASE, PROFILES[profile])
    values["profile"] = profile
    for s in sets:
        if s.partition("=")[0] in ("profile", "spec.profile"):
            continue
        apply_set(values, s)
    dc = values["meshConfig"].setdefault("defaultConfig", {})
    if dc.get("discoveryAddress") == BASE["meshConfig"]["defaultConfig"]["discoveryAddress"]:
        istiod = f"istiod-{values['revision']}" if values["revision"] else "istiod"
        dc["discoveryAddress"] = f"{istiod}.{values['namespace']}.svc:15012"
    return values
