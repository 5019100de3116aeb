"""`istiod-py analyze` as istioctl analyze (issue 15): one fixture per Istio code
(tests/unit/analysis_fixtures/ISTxxxx.yaml with the exact expected lines in
ISTxxxx.txt, analyzed together with _services.yaml), exit codes, -o json,
suppression, and no messages on the samples that are meshes of their own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from istiod_py.cli.app import main

FIXTURES = Path(__file__).parent / "analysis_fixtures"
SAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "samples"
CODES = sorted(p.stem for p in FIXTURES.glob("IST*.yaml"))
REQUIRED = {"IST0101", "IST0104", "IST0106", "IST0108", "IST0109", "IST0110", "IST0111", "IST0112", "IST0128",
            "IST0129", "IST0130", "IST0131", "IST0132", "IST0134", "IST0145", "IST0149", "IST0151", "IST0152",
            "IST0153", "IST0154", "IST0155", "IST0173", "IST0174", "IST0177"}  # fmt: skip
LEVEL_EXIT = {"Error": 79, "Warning": 0, "Info": 0}


def analyze(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    rc = main(["analyze", *args])
    return rc, capsys.readouterr().out


def test_every_required_code_has_a_fixture() -> None:
    assert {c.split("-")[0] for c in CODES} >= REQUIRED


@pytest.mark.parametrize("code", CODES)
def test_fixture(code: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FIXTURES)
    expected = (FIXTURES / f"{code}.txt").read_text().splitlines()
    rc, out = analyze(capsys, "_services.yaml", "-f", f"{code}.yaml")
    assert out.splitlines() == expected
    # A second fixture of a code is named CODE-what.yaml.
    assert all(f"[{code.split('-')[0]}]" in line for line in expected)
    level = expected[0].split(" ", 1)[0]
    assert rc == LEVEL_EXIT[level]
    # The shared registry alone is clean: every line above comes from the fixture.
    rc, out = analyze(capsys, "_services.yaml")
    assert rc == 0 and out.startswith("\u2714 No validation issues found")


def test_json_output_and_failure_threshold(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FIXTURES)
    rc, out = analyze(capsys, "_services.yaml", "IST0174.yaml", "IST0101.yaml", "-o", "json")
    assert rc == 79
    msgs = json.loads(out)["messages"]
    assert [(m["code"], m["level"], m["origin"]) for m in msgs] == [
        ("IST0101", "Error", "VirtualService default/reviews"),  # errors first, as istioctl sorts
        ("IST0174", "Warning", "DestinationRule default/ratings"),
    ]
    assert msgs[0]["message"] == 'Referenced host not found: "ratings"'
    assert msgs[0]["reference"] == "IST0101.yaml" and msgs[0]["documentationUrl"].endswith("/ist0101/")
    # Warnings fail only when asked to; --output-threshold hides the less severe.
    assert analyze(capsys, "_services.yaml", "IST0174.yaml")[0] == 0
    assert analyze(capsys, "_services.yaml", "IST0174.yaml", "--failure-threshold", "Warning")[0] == 79
    rc, out = analyze(capsys, "_services.yaml", "IST0131.yaml", "--output-threshold", "Warning")
    assert rc == 0 and "IST0131" not in out


def test_suppression(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(FIXTURES)
    for rule in ("IST0101=VirtualService default/*", "IST0101=VirtualService reviews.default", "*=VirtualService *"):
        rc, out = analyze(capsys, "_services.yaml", "IST0101.yaml", "-S", rule)
        assert rc == 0 and "IST0101" not in out, rule
    rc, out = analyze(capsys, "_services.yaml", "IST0101.yaml", "-S", "IST0101=VirtualService other/*")
    assert rc == 79 and "IST0101" in out
    # The resource annotation istioctl honours.
    text = (
        (FIXTURES / "IST0101.yaml")
        .read_text()
        .replace(
            "metadata: {name: reviews, namespace: default}",
            'metadata: {name: reviews, namespace: default, annotations: {galley.istio.io/analyze-suppress: "IST0101"}}',
        )
    )
    (tmp_path / "vs.yaml").write_text(text)
    rc, out = analyze(capsys, "_services.yaml", str(tmp_path / "vs.yaml"))
    assert rc == 0 and "IST0101" not in out


def test_bad_suppression_is_usage_error() -> None:
    r = subprocess.run([sys.executable, "-m", "istiod_py.cli", "analyze", str(FIXTURES), "-S", "IST0101"],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2 and "CODE=KIND NAME" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("sample", ["demo", "gateway", "bookinfo-local"])
def test_no_messages_on_sample_meshes(sample: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Each sample directory that is a whole mesh analyzes clean, but for the one-host
    samples' Sidecar defaultEndpoints (127.0.1.x), the documented istiod_py extension that
    ISTPY0003 NotPortableToIstiod flags."""
    rc, out = analyze(capsys, str(SAMPLES / sample), "-o", "json")
    codes = {(m["code"], m["origin"].split()[0]) for m in json.loads(out)["messages"]}
    expected = {("ISTPY0003", "Sidecar")} if sample in ("demo", "bookinfo-local") else set()
    assert rc == 0 and codes == expected, out


def test_bookinfo_task_files_only_report_what_istio_reports(capsys: pytest.CaptureFixture[str]) -> None:
    """The bookinfo/tasks files are steps on top of the bookinfo services (bookinfo-local):
    each step with the DestinationRules analyzes clean except the subsets that no bookinfo
    workload carries (details v2, ratings v2/v2-mysql/v2-mysql-vm: Istio's IST0173 too), and
    the rate-limit EnvoyFilters insert without a priority (Istio's IST0151 warning)."""
    base = [str(SAMPLES / "bookinfo-local"), str(SAMPLES / "bookinfo" / "destination-rule-all.yaml")]
    steps = sorted((SAMPLES / "bookinfo").glob("virtual-service-*.yaml")) + sorted(
        (SAMPLES / "tasks").glob("request-timeouts-*.yaml")
    )
    steps.append(SAMPLES / "bookinfo" / "bookinfo-gateway.yaml")
    for step in steps:
        rc, out = analyze(capsys, *base, str(step), "-o", "json")
        found = {
            (m["code"], m["origin"], m["message"].split(" defined")[0])
            for m in json.loads(out)["messages"]
            if m["code"] != "ISTPY0003"  # bookinfo-local's one-host Sidecars (the extension)
        }
        assert found == {
            ("IST0173", "DestinationRule default/details", "The Subset v2"),
            ("IST0173", "DestinationRule default/ratings", "The Subset v2"),
            ("IST0173", "DestinationRule default/ratings", "The Subset v2-mysql"),
            ("IST0173", "DestinationRule default/ratings", "The Subset v2-mysql-vm"),
        }, step
    for ef in sorted((SAMPLES / "ratelimit").glob("*.yaml")):
        rc, out = analyze(capsys, str(SAMPLES / "bookinfo-local"), str(ef), "-o", "json")
        assert rc == 0, out
        assert {m["code"] for m in json.loads(out)["messages"]} - {"ISTPY0003"} == {"IST0151"}, ef
