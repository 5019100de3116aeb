"""Golden files for injection and installation: `kube-inject` of each
tests/golden/inject/<case>.in.yaml equals <case>.out.yaml, and
`manifest generate --set profile=P` (CRDs aside: deploy/crds is its own
generated set) equals tests/golden/install/P.yaml. `--update-golden`
rewrites them; review the diff like code."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from istiod_py.inject.kube_inject import kube_inject
from istiod_py.inject.values import InjectionValues
from istiod_py.install.manifests import render, to_yaml
from istiod_py.install.profiles import PROFILES, resolve

HERE = Path(__file__).resolve().parent
INJECT_CASES = sorted(p.name[: -len(".in.yaml")] for p in (HERE / "inject").glob("*.in.yaml"))


def _check(path: Path, actual: str, update: bool) -> None:
    if update:
        path.write_text(actual, encoding="utf-8")
    assert path.is_file(), f"{path} is missing; run pytest tests/golden --update-golden"
    expected = path.read_text(encoding="utf-8")
    assert list(yaml.safe_load_all(actual)) == list(yaml.safe_load_all(expected)), f"{path} differs"


def test_inject_cases_exist() -> None:
    assert len(INJECT_CASES) >= 4


@pytest.mark.parametrize("case", INJECT_CASES)
def test_kube_inject_golden(case: str, update_golden: bool) -> None:
    src = (HERE / "inject" / f"{case}.in.yaml").read_text(encoding="utf-8")
    _check(HERE / "inject" / f"{case}.out.yaml", kube_inject(src, InjectionValues()), update_golden)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_manifest_generate_golden(profile: str, update_golden: bool) -> None:
    objs = [o for o in render(resolve([f"profile={profile}"])) if o["kind"] != "CustomResourceDefinition"]
    _check(HERE / "install" / f"{profile}.yaml", to_yaml(objs), update_golden)
