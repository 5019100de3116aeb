"""deploy/charts/istiod-py: current with its generator, and rendering it with
each profile's values file gives the objects of `manifest generate`.

Helm is not installed here; the chart uses only `{{ .Values.a.b }}`,
`{{ ... | quote }}`, `{{ .Release.Namespace }}` and whole-line
`{{- if .Values.x }}` / `{{- end }}`, which `render` below implements as Helm
does (quote: Go's %q, which equals JSON quoting for these values). Anything else
in a template fails the test."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from istiod_py.install.chart import files
from istiod_py.install.manifests import render as render_manifests
from istiod_py.install.profiles import PROFILES, resolve

CHART = Path(__file__).resolve().parents[2] / "deploy" / "charts" / "istiod-py"
EXPR = re.compile(r"\{\{\s*(\.Values\.[\w.]+|\.Release\.Namespace)(\s*\|\s*quote)?\s*\}\}")
IF = re.compile(r"^\{\{- if (\.Values\.[\w.]+) \}\}$")


def _lookup(expr: str, values: dict[str, Any], namespace: str) -> Any:
    if expr == ".Release.Namespace":
        return namespace
    node: Any = values
    for p in expr.split(".")[2:]:
        node = node[p]
    return node


def render(values: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for tmpl in sorted((CHART / "templates").glob("*.yaml")):
        keep: list[bool] = []
        lines = []
        for line in tmpl.read_text().splitlines():
            m = IF.match(line)
            if m:
                keep.append(bool(_lookup(m.group(1), values, namespace)))
                continue
            if line == "{{- end }}":
                keep.pop()
                continue
            if not all(keep):
                continue

            def sub(m: re.Match[str]) -> str:
                v = _lookup(m.group(1), values, namespace)
                return json.dumps(str(v)) if m.group(2) else str(v)

            line = EXPR.sub(sub, line)
            assert "{{" not in line, f"{tmpl.name}: unsupported template: {line}"
            lines.append(line)
        assert keep == [], f"{tmpl.name}: unbalanced if/end"
        docs += [d for d in yaml.safe_load_all("\n".join(lines)) if d]
    return docs


def _normalize(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for o in objs:
        if o["kind"] == "ConfigMap" and "mesh" in o.get("data", {}):
            o = {**o, "data": {**o["data"], "mesh": yaml.safe_load(o["data"]["mesh"])}}
        out.append(o)
    return sorted(out, key=lambda o: (o["kind"], o["metadata"]["name"]))


def test_chart_is_current_with_its_generator() -> None:
    for rel, text in files().items():
        path = CHART / rel
        assert path.is_file() and path.read_text() == text, f"{path} is stale: run scripts/gen_helm_chart.py"
    assert (CHART / "Chart.yaml").is_file()


@pytest.mark.parametrize("profile", list(PROFILES))
def test_chart_renders_the_objects_of_manifest_generate(profile: str) -> None:
    name = "values.yaml" if profile == "default" else f"values-{profile}.yaml"
    values = yaml.safe_load((CHART / name).read_text())
    chart = render(values, "istio-system")
    expected = [
        o for o in render_manifests(resolve([f"profile={profile}"]))
        if o["kind"] not in ("Namespace", "CustomResourceDefinition")
    ]  # fmt: skip
    assert _normalize(chart) == _normalize(expected)


def test_chart_values_reach_the_objects() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    values["pilot"]["replicas"] = 3
    values["hub"] = "reg.example/mesh"
    values["global"]["proxy"]["includeIPRanges"] = "*"
    objs = render(values, "mesh")
    istiod = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "istiod")
    assert istiod["metadata"]["namespace"] == "mesh" and istiod["spec"]["replicas"] == 3
    assert istiod["spec"]["template"]["spec"]["containers"][0]["image"] == "reg.example/mesh/pilot:latest"
    env = {e["name"]: e.get("value") for e in istiod["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["INJECT_ISTIO_NAMESPACE"] == "mesh" and env["INJECT_INCLUDE_IP_RANGES"] == "*"
    mwc = next(o for o in objs if o["kind"] == "MutatingWebhookConfiguration")
    assert mwc["webhooks"][0]["clientConfig"]["service"]["namespace"] == "mesh"
