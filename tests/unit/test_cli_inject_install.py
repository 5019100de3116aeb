"""`kube-inject`, `manifest generate`, `profile dump/list` as users run them
(the real command in a subprocess): output, exit codes, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [sys.executable, "-m", "istiod_py.cli", *args], input=stdin, capture_output=True, text=True, cwd=REPO,
        timeout=60,
    )  # fmt: skip
    assert "Traceback" not in r.stderr, r.stderr
    return r


def test_kube_inject_file_and_stdin(tmp_path: Path) -> None:
    src = GOLDEN / "inject" / "bookinfo-reviews.in.yaml"
    expected = list(yaml.safe_load_all((GOLDEN / "inject" / "bookinfo-reviews.out.yaml").read_text()))
    r = cli("kube-inject", "-f", str(src))
    assert r.returncode == 0, r.stderr
    assert list(yaml.safe_load_all(r.stdout)) == expected
    out = tmp_path / "out.yaml"
    r = cli("kube-inject", "-f", "-", "-o", str(out), stdin=src.read_text())
    assert r.returncode == 0 and r.stdout == ""
    assert list(yaml.safe_load_all(out.read_text())) == expected


def test_kube_inject_flags_change_the_image_and_addresses() -> None:
    src = GOLDEN / "inject" / "bookinfo-reviews.in.yaml"
    r = cli("kube-inject", "-f", str(src), "--hub", "reg.local/mesh", "--tag", "1.2", "--revision", "canary")
    dep = next(d for d in yaml.safe_load_all(r.stdout) if d["kind"] == "Deployment")
    proxy = dep["spec"]["template"]["spec"]["containers"][-1]
    assert proxy["image"] == "reg.local/mesh/proxy:1.2"
    assert "istiod-canary.istio-system.svc:15012" in proxy["args"]


def test_kube_inject_errors_name_file_document_and_annotation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\n"
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {sidecar.istio.io/interceptionMode: UP}\n"
        "spec: {containers: [{name: c}]}\n"
    )
    r = cli("kube-inject", "-f", str(bad))
    assert r.returncode == 1
    assert f"{bad}: document 2: Pod default/p" in r.stderr and "sidecar.istio.io/interceptionMode" in r.stderr
    r = cli("kube-inject", "-f", str(tmp_path / "missing.yaml"))
    assert r.returncode == 3 and "missing.yaml" in r.stderr


def test_manifest_generate_matches_the_golden_and_profile_errors() -> None:
    r = cli("manifest", "generate", "--set", "profile=demo")
    assert r.returncode == 0, r.stderr
    objs = [o for o in yaml.safe_load_all(r.stdout) if o["kind"] != "CustomResourceDefinition"]
    assert objs == list(yaml.safe_load_all((GOLDEN / "install" / "demo.yaml").read_text()))
    r = cli("manifest", "generate", "--set", "profile=nope")
    assert r.returncode == 2 and "unknown profile" in r.stderr
    r = cli("manifest", "generate", "--set", "pilot.replicaz=2")
    assert r.returncode == 2 and "pilot.replicaz" in r.stderr


def test_profile_dump_and_list() -> None:
    r = cli("profile", "dump", "minimal", "--set", "pilot.replicas=2")
    v = yaml.safe_load(r.stdout)
    assert v["profile"] == "minimal" and v["pilot"]["replicas"] == 2 and v["components"]["ingressGateway"] is False
    assert cli("profile", "list").stdout.split() == ["default", "demo", "minimal", "empty"]


def test_install_with_an_unreadable_kubeconfig_is_one_line(tmp_path: Path) -> None:
    r = cli("install", "--kubeconfig", str(tmp_path / "nope"))
    assert r.returncode == 3 and "kubeconfig" in r.stderr
