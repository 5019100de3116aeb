"""The real `istiod-py` command in a subprocess: exit codes, one-line errors,
validate/analyze rules, stdin, and a second `serve` on a port already in use."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.net import allocate_ip, free_port

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "deploy" / "samples"


def cli(*args: str, stdin: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    raw = subprocess.run(
        [sys.executable, "-m", "istiod_py.cli", *args], input=stdin, capture_output=True, cwd=REPO, timeout=timeout
    )
    r = subprocess.CompletedProcess(raw.args, raw.returncode, raw.stdout.decode(), raw.stderr.decode())
    assert "Traceback" not in r.stderr, r.stderr
    return r


def one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("istiod-py: error:")]
    assert len(lines) == 1, r.stderr
    return lines[0]


# --- validate / analyze ------------------------------------------------------------


def test_readme_validate_samples_succeeds() -> None:
    """The README's own command: deploy/samples/* are alternative meshes and task steps,
    so `validate` checks each file on its own."""
    r = cli("validate", "deploy/samples")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 errors" in r.stdout and "duplicate" not in r.stdout


def test_analyze_treats_inputs_as_one_mesh() -> None:
    r = cli("analyze", "deploy/samples/demo")
    assert r.returncode == 0, r.stdout
    # The samples merged into one mesh collide, as `serve --config-dir deploy/samples` would report.
    r = cli("analyze", "deploy/samples", "-o", "json")
    # 79: istioctl's exit code for "analysis found issues" (issue 15; it was 1 before analyze followed istioctl).
    assert r.returncode == 79
    report = json.loads(r.stdout)
    assert report["mode"] == "one mesh"
    assert any("duplicate resource" in e["message"] for e in report["errors"])


def test_validate_still_finds_duplicates_within_one_file(tmp_path: Path) -> None:
    vs = (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\n"
        "spec: {hosts: [a], http: [{route: [{destination: {host: a}}]}]}\n"
    )
    f = tmp_path / "two.yaml"
    f.write_text(vs + "---\n" + vs)
    r = cli("validate", str(f))
    assert r.returncode == 1
    assert "duplicate resource" in r.stdout and str(f) in r.stdout
    assert "1 resources valid" in r.stdout


def test_validate_reads_stdin() -> None:
    text = (SAMPLES / "demo" / "routing.yaml").read_bytes()
    r = cli("validate", "-", "-o", "json", stdin=text)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["resources"] >= 1
    bad = b"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec: {hostz: [a]}\n"
    r = cli("validate", "-", stdin=bad)
    assert r.returncode == 1
    assert "<stdin>" in r.stdout and "hostz" in r.stdout


def test_missing_path_is_one_line_input_error() -> None:
    r = cli("validate", "deploy/samples/demo", "no/such/dir")
    assert r.returncode == 3
    assert "no/such/dir" in one_error_line(r)
    assert r.stdout == ""  # nothing validated before the bad input is reported


def test_undecodable_file_is_one_line_input_error(tmp_path: Path) -> None:
    f = tmp_path / "latin1.yaml"
    f.write_bytes("metadata: {name: caf\xe9}\n".encode("latin-1"))
    for args in (["validate", str(f)], ["analyze", str(tmp_path)]):
        r = cli(*args)
        assert r.returncode == 3
        line = one_error_line(r)
        assert str(f) in line and "UTF-8" in line
    r = cli("validate", "-", stdin=b"\xff\xfe\x00")
    assert r.returncode == 3
    assert "<stdin>" in one_error_line(r)


def test_help_documents_exit_codes() -> None:
    for args in (["--help"], ["validate", "--help"], ["serve", "--help"]):
        r = cli(*args)
        assert r.returncode == 0
        assert "exit codes" in r.stdout and "3 an input cannot be read" in r.stdout.replace("\n", " ")


def test_version() -> None:
    r = cli("version", "-o", "json")
    assert r.returncode == 0
    assert json.loads(r.stdout)["client"]["version"]


def test_serve_unreadable_inputs_are_one_line_input_errors(tmp_path: Path) -> None:
    host = allocate_ip()
    ports = ["--listen-address", host, "--xds-port", str(free_port(host)), "--debug-port", str(free_port(host))]
    r = cli("serve", *ports, "--no-ca", "--mesh-config", str(tmp_path / "missing.yaml"), timeout=30)
    assert r.returncode == 3
    assert "missing.yaml: No such file or directory" in one_error_line(r)
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("tokens:\n  t1: {namespace: default}\n")
    r = cli(
        "serve", *ports, "--secure-port", str(free_port(host)), "--ca-dir", str(tmp_path / "ca"),
        "--token-file", str(tokens), timeout=30,
    )  # fmt: skip
    assert r.returncode == 3
    line = one_error_line(r)
    assert str(tokens) in line and "serviceAccount" in line


# --- serve: a port already in use -------------------------------------------------


def _wait_ready(host: str, port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the first serve exited"
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError("first serve not ready")


@pytest.fixture
def first_serve(tmp_path: Path) -> Iterator[tuple[str, dict[str, int]]]:
    host = allocate_ip()
    ports = {name: free_port(host) for name in ("xds", "secure", "debug")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "istiod_py.cli", "serve", "--listen-address", host,
         "--xds-port", str(ports["xds"]), "--secure-port", str(ports["secure"]),
         "--debug-port", str(ports["debug"]), "--ca-dir", str(tmp_path / "ca1"), "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_ready(host, ports["debug"], proc)
        yield host, ports
    finally:
        proc.terminate()
        proc.wait(15)


@pytest.mark.parametrize(
    ("taken", "flag"), [("xds", "--xds-port"), ("secure", "--secure-port"), ("debug", "--debug-port")]
)
def test_second_serve_on_a_taken_port_fails_naming_it(
    first_serve: tuple[str, dict[str, int]], tmp_path: Path, taken: str, flag: str
) -> None:
    host, ports = first_serve
    mine = {name: free_port(host) for name in ("xds", "secure", "debug")}
    mine[taken] = ports[taken]
    r = cli(
        "serve", "--listen-address", host, "--xds-port", str(mine["xds"]), "--secure-port", str(mine["secure"]),
        "--debug-port", str(mine["debug"]), "--ca-dir", str(tmp_path / "ca2"), timeout=30,
    )  # fmt: skip
    assert r.returncode == 4, r.stderr
    line = one_error_line(r)
    assert f"{host}:{ports[taken]}" in line and f"{flag} {ports[taken]}" in line
    # The first control plane still answers: nothing was shared or stolen.
    with urllib.request.urlopen(f"http://{host}:{ports['debug']}/ready", timeout=5) as resp:
        assert resp.status == 200


def test_operator_commands_unreachable_control_plane_is_exit_4() -> None:
    """proxy-status / proxy-config / describe against a port nobody listens on: one line, exit 4."""
    from tests.support.net import free_port

    addr = f"127.0.0.1:{free_port('127.0.0.1')}"
    for args in (["proxy-status"], ["proxy-config", "cluster", "x.default"], ["describe", "pod", "x"]):
        r = cli(*args, "--debug-address", addr, "--timeout", "2")
        assert r.returncode == 4, (args, r.stderr)
        assert addr in one_error_line(r) and "Traceback" not in r.stderr
    r = cli("proxy-config", "cluster")
    assert r.returncode == 2 and "PROXY" in one_error_line(r)
