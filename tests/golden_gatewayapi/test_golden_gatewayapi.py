"""Golden conversion tests: Gateway API YAML in, generated Istio resources and the
Gateway API status conditions out.

Each directory is a case: ``input.yaml`` (loaded with ``services.yaml`` and the
repository files ``files.txt`` lists, e.g. Istio's bookinfo Gateway API samples) and
``output.yaml`` (the generated Istio Gateways/VirtualServices, then the status of
every Gateway API resource). ``UPDATE_GOLDEN=1 pytest tests/golden_gatewayapi``
regenerates the outputs; review the diff like code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format

from istiod_py.config.gatewayapi.convert import convert
from istiod_py.config.loader import load_text

HERE = Path(__file__).resolve().parent
CASES = sorted(p.name for p in HERE.iterdir() if (p / "input.yaml").is_file())


def render(case_dir: Path) -> dict[str, Any]:
    text = (HERE / "services.yaml").read_text() + "\n---\n" + (case_dir / "input.yaml").read_text()
    listed = case_dir / "files.txt"  # repository files loaded unchanged (Istio's own samples)
    if listed.is_file():
        for name in listed.read_text().split():
            text += "\n---\n" + (HERE.parent.parent / name).read_text()
    loaded = load_text(text, "input.yaml")
    assert not loaded.errors, [str(e) for e in loaded.errors]
    result = convert(loaded.configs, loaded.services)
    resources = [
        {
            "kind": c.meta.kind,
            "metadata": {"name": c.meta.name, "namespace": c.meta.namespace, "annotations": dict(c.meta.annotations)},
            "spec": json_format.MessageToDict(c.spec),
        }
        for c in result.configs
    ]
    status = [
        {"kind": s.kind, "namespace": s.namespace, "name": s.name, "status": s.as_dict()} for s in result.statuses
    ]
    return {"resources": resources, "status": status}


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    got = render(HERE / case)
    expected_file = HERE / case / "output.yaml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        expected_file.write_text(yaml.safe_dump(got, sort_keys=False, width=120))
    assert expected_file.is_file(), f"{expected_file} missing: run UPDATE_GOLDEN=1 pytest {HERE}"
    assert got == yaml.safe_load(expected_file.read_text())


def test_every_condition_reason_is_covered() -> None:
    """The golden cases together show each reason the spec defines that istiod_py reports."""
    reasons: set[str] = set()
    for case in CASES:
        for st in render(HERE / case)["status"]:
            s = st["status"]
            conds = s.get("conditions", []) + [c for li in s.get("listeners", []) for c in li["conditions"]]
            conds += [c for p in s.get("parents", []) for c in p["conditions"]]
            reasons.update(c["reason"] for c in conds)
    wanted = {
        "Accepted", "Programmed", "ResolvedRefs", "Invalid", "NoConflicts", "HostnameConflict", "ProtocolConflict",
        "UnsupportedProtocol", "InvalidCertificateRef", "InvalidRouteKinds", "RefNotPermitted",
        "NotAllowedByListeners", "NoMatchingListenerHostname", "NoMatchingParent", "InvalidKind", "BackendNotFound",
    }  # fmt: skip
    assert wanted <= reasons, sorted(wanted - reasons)
