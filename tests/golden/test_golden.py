"""Golden translation tests: Istio YAML in, expected xDS out.

Each directory under tests/golden is a case:

- ``input.yaml``: Istio config and Kubernetes Services, as a user would write them;
- ``proxies.yaml``: the proxies to translate for (``name``, ``node_id``, ``metadata``);
- ``mesh.yaml`` (optional): MeshConfig, as ``istiod-py serve --mesh-config`` reads it;
- ``<proxy name>.yaml``: the expected clusters, endpoints, listeners and routes
  (``MessageToDict(preserving_proto_field_name=True)``, sorted by name).

``pytest tests/golden --update-golden`` regenerates the expected files; review the
diff like code.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format

from istiod_py.config.loader import load_text
from istiod_py.model import MeshConfig, parse_proxy
from istiod_py.registry.aggregate import Aggregator, SourceSnapshot
from istiod_py.translate.generate import Translator
from istiod_py.xds.types import TypeUrl

HERE = Path(__file__).resolve().parent
CASES = sorted(p.name for p in HERE.iterdir() if (p / "input.yaml").is_file())
SECTIONS = (
    ("clusters", TypeUrl.CLUSTER),
    ("endpoints", TypeUrl.ENDPOINT),
    ("listeners", TypeUrl.LISTENER),
    ("routes", TypeUrl.ROUTE),
)


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style='"' if "\n" in data else None)


def _ordered(dumper: yaml.SafeDumper, data: OrderedDict[str, Any]) -> yaml.Node:
    # MessageToDict returns OrderedDicts for Any payloads ("@type" first)
    return dumper.represent_dict(data.items())


_Dumper.add_representer(str, _str)
_Dumper.add_representer(OrderedDict, _ordered)


def _name(d: dict[str, Any]) -> str:
    return str(d.get("name") or d.get("cluster_name") or "")


def translate_case(case_dir: Path) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """proxy name -> {section: [resource as dict, sorted by name]}."""
    loaded = load_text((case_dir / "input.yaml").read_text(), "input.yaml")
    assert [str(e) for e in loaded.errors] == [], "the case's input.yaml must load cleanly"
    mesh_file = case_dir / "mesh.yaml"
    mesh = MeshConfig.load(str(mesh_file)) if mesh_file.is_file() else MeshConfig()
    agg = Aggregator(mesh=mesh)
    agg.set_source(
        "files",
        SourceSnapshot(tuple(loaded.configs), tuple(loaded.services), tuple(loaded.endpoint_slices)),
    )
    state = agg.build()
    translator = Translator()
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for p in yaml.safe_load((case_dir / "proxies.yaml").read_text()):
        proxy = parse_proxy(p["node_id"], p.get("metadata") or {})
        sections: dict[str, list[dict[str, Any]]] = {}
        for section, type_url in SECTIONS:
            res = translator.generate(state, proxy, type_url)
            items = [
                json_format.MessageToDict(b.message(), preserving_proto_field_name=True) for b in res.index.values()
            ]
            sections[section] = sorted(items, key=_name)
        out[p["name"]] = sections
    return out


def render(sections: dict[str, list[dict[str, Any]]]) -> str:
    return yaml.dump(sections, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str, update_golden: bool) -> None:
    case_dir = HERE / case
    produced = translate_case(case_dir)
    mismatched = []
    for proxy, sections in produced.items():
        expected_file = case_dir / f"{proxy}.yaml"
        text = render(sections)
        if update_golden:
            expected_file.write_text(text)
            continue
        assert expected_file.is_file(), f"{expected_file} is missing; run pytest tests/golden --update-golden"
        if yaml.safe_load(expected_file.read_text()) != yaml.safe_load(text):
            mismatched.append(proxy)
    assert not mismatched, (
        f"{case}: output differs from the golden files for {mismatched}; "
        "if the change is intended, run `pytest tests/golden --update-golden` and review the diff"
    )


def test_every_case_is_complete() -> None:
    assert len(CASES) >= 7
    for case in CASES:
        proxies = yaml.safe_load((HERE / case / "proxies.yaml").read_text())
        for p in proxies:
            assert (HERE / case / f"{p['name']}.yaml").is_file(), f"{case}: no golden for {p['name']}"


EXPORT_TO_ANNOTATION = """\
apiVersion: v1
kind: Service
metadata: {name: internal, namespace: team-a, annotations: {networking.istio.io/exportTo: "."}}
spec:
  selector: {app: internal}
  ports: [{name: http, port: 8080}]
"""


def test_kube_service_export_to_annotation_hides_service() -> None:
    loaded = load_text(EXPORT_TO_ANNOTATION, "input.yaml")
    assert loaded.errors == []
    agg = Aggregator()
    agg.set_source("files", SourceSnapshot(tuple(loaded.configs), tuple(loaded.services)))
    state = agg.build()
    outsider = parse_proxy(
        "sidecar~127.0.6.4~backend-1.team-b~team-b.svc.cluster.local",
        {"NAMESPACE": "team-b", "INTERCEPTION_MODE": "NONE"},
    )
    clusters = Translator().generate(state, outsider, TypeUrl.CLUSTER)
    assert "outbound|8080||internal.team-a.svc.cluster.local" not in clusters.index
