"""The Helm chart deploy/charts/istiod-py, generated from the same renderer as
`manifest generate` so the two cannot drift: the objects are rendered once
with a sentinel in place of each templated value, and each sentinel becomes
its `{{ .Values.* }}` expression (`| quote` where it is a whole string scalar).
Objects are grouped per component behind `{{- if .Values.components.X }}`.

Not in the chart: the Namespace (`helm install --create-namespace`), the CRDs
(apply deploy/crds first; Helm's crds/ would be a second copy), revisions and
`pilot.env` (use `istiod-py manifest generate` for those). Values not listed in
values.yaml are fixed at their defaults.

`python scripts/gen_helm_chart.py` rewrites the chart; a test checks it is current
and that rendering it with each profile's values file gives `manifest generate`'s
objects."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import yaml

from . import gateways, manifests, webhooks
from .profiles import PROFILES, resolve

NS_SENTINEL = "zzrelnszz"
# Value paths the chart templates (strings and integers); all exist in every profile.
STRING_PATHS = (
    "hub", "tag", "pilot.image", "pilot.logLevel",
    "pilot.resources.requests.cpu", "pilot.resources.requests.memory",
    "global.imagePullPolicy", "global.meshID", "global.clusterID",
    "global.proxy.image", "global.proxy.logLevel", "global.proxy.interceptionMode",
    "global.proxy.includeIPRanges", "global.proxy.excludeIPRanges",
    "global.proxy.excludeInboundPorts", "global.proxy.excludeOutboundPorts",
    *(f"global.proxy.resources.{a}.{b}" for a in ("requests", "limits") for b in ("cpu", "memory")),
    "sidecarInjectorWebhook.policy",
    "meshConfig.accessLogFile", "meshConfig.trustDomain", "meshConfig.rootNamespace",
    *(f"gateways.{g}.resources.{a}.{b}" for g in ("ingress", "egress") for a in ("requests", "limits")
      for b in ("cpu", "memory")),
    "gateways.ingress.serviceType", "gateways.egress.serviceType",
)  # fmt: skip
INT_PATHS = ("pilot.replicas", "gateways.ingress.replicas", "gateways.egress.replicas")
COMPONENTS = ("pilot", "ingressGateway", "egressGateway")


def _get(tree: dict[str, Any], path: str) -> Any:
    node: Any = tree
    for p in path.split("."):
        node = node[p]
    return node


def _set(tree: dict[str, Any], path: str, value: Any) -> None:
    *head, last = path.split(".")
    node = tree
    for p in head:
        node = node[p]
    node[last] = value


def _sentinels() -> tuple[dict[str, Any], dict[str, tuple[str, bool]]]:
    """Values full of sentinels, and sentinel text -> (helm expression, is a string)."""
    v = resolve(["profile=demo"])
    table: dict[str, tuple[str, bool]] = {}
    for i, path in enumerate(STRING_PATHS):
        s = f"zzs{i}zz"
        _set(v, path, s)
        table[s] = (f".Values.{path}", True)
    for i, path in enumerate(INT_PATHS):
        n = 900001 + i
        _set(v, path, n)
        table[str(n)] = (f".Values.{path}", False)
    v["namespace"] = NS_SENTINEL
    v["meshConfig"]["defaultConfig"]["discoveryAddress"] = f"istiod.{NS_SENTINEL}.svc:15012"
    table[NS_SENTINEL] = (".Release.Namespace", True)
    return v, table


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def _templated(objs: list[dict[str, Any]], table: dict[str, tuple[str, bool]]) -> str:
    text = yaml.dump_all(objs, Dumper=_Dumper, sort_keys=False, width=10**9)
    out = []
    for line in text.splitlines():
        key, sep, scalar = line.rpartition(": ") if ": " in line else ("", "", "")
        if not sep and line.lstrip().startswith("- "):
            key, sep, scalar = line.partition("- ")
        whole = scalar.strip("'\"")
        if sep and whole in table:
            expr, is_str = table[whole]
            line = f"{key}{sep}{{{{ {expr} | quote }}}}" if is_str else f"{key}{sep}{{{{ {expr} }}}}"
        else:
            for s, (expr, _) in table.items():
                if s in line:
                    line = line.replace(s, f"{{{{ {expr} }}}}")
        out.append(line)
    return "\n".join(out) + "\n"


def templates() -> dict[str, str]:
    v, table = _sentinels()
    inj = manifests.injection_values(v)
    groups: dict[str, tuple[str, Callable[[], list[dict[str, Any]]]]] = {
        "istiod.yaml": ("pilot", lambda: [*manifests.rbac(v), manifests.mesh_configmap(v),
                                          manifests.istiod_deployment(v), manifests.istiod_service(v),
                                          webhooks.mutating(v), webhooks.validating(v)]),
        "ingressgateway.yaml": ("ingressGateway", lambda: gateways.gateway(v, "ingress", inj)),
        "egressgateway.yaml": ("egressGateway", lambda: gateways.gateway(v, "egress", inj)),
    }  # fmt: skip
    out = {}
    for name, (component, build) in groups.items():
        body = _templated(build(), table)
        out[name] = (
            "# Generated by scripts/gen_helm_chart.py from istiod_py/install; do not edit.\n"
            f"{{{{- if .Values.components.{component} }}}}\n{body}{{{{- end }}}}\n"
        )
    return out


def values_for(profile: str) -> dict[str, Any]:
    """A profile's values, only the keys the chart reads."""
    v = resolve([f"profile={profile}"])
    out: dict[str, Any] = {"components": {c: v["components"][c] for c in COMPONENTS}}
    for path in (*STRING_PATHS, *INT_PATHS):
        node = out
        *head, last = path.split(".")
        for p in head:
            node = node.setdefault(p, {})
        node[last] = copy.deepcopy(_get(v, path))
    return out


def files() -> dict[str, str]:
    """Every generated file of the chart, by path inside deploy/charts/istiod-py."""
    out = {f"templates/{k}": v for k, v in templates().items()}
    head = "# Generated by scripts/gen_helm_chart.py from istiod_py/install/profiles.py; do not edit.\n"
    out["values.yaml"] = head + "# The default profile.\n" + yaml.safe_dump(values_for("default"), sort_keys=False)
    for p in PROFILES:
        if p != "default":
            out[f"values-{p}.yaml"] = (
                head + f"# helm install -f values-{p}.yaml\n" + yaml.safe_dump(values_for(p), sort_keys=False)
            )
    return out
