"""./demo.sh's choice between the capture demo and the loopback demo
(istiod_py/demo/__main__.py): auto falls back to loopback with one line saying why."""

from __future__ import annotations

from pathlib import Path

import pytest

from istiod_py.demo import __main__ as demo_main
from istiod_py.demo import cluster


def _capable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_main.sys, "platform", "linux")
    monkeypatch.setattr(demo_main.os, "geteuid", lambda: 0)
    monkeypatch.setattr(demo_main.shutil, "which", lambda tool: f"/usr/sbin/{tool}")


def test_auto_runs_kube_when_root_linux_tools_and_cached_binaries(monkeypatch: pytest.MonkeyPatch) -> None:
    _capable(monkeypatch)
    monkeypatch.setattr(cluster, "cached_bin_dir", lambda: Path("/cache/bin"))
    assert demo_main.choose("auto") == ("kube", "")


def test_auto_falls_back_when_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    _capable(monkeypatch)
    monkeypatch.setattr(demo_main.os, "geteuid", lambda: 1000)
    mode, why = demo_main.choose("auto")
    assert mode == "loopback" and "not root" in why and "\n" not in why


def test_auto_falls_back_when_a_tool_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    _capable(monkeypatch)
    monkeypatch.setattr(demo_main.shutil, "which", lambda tool: None if tool == "iptables-restore" else "/x")
    mode, why = demo_main.choose("auto")
    assert mode == "loopback" and "`iptables-restore` is not installed" in why


def test_auto_falls_back_when_not_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    _capable(monkeypatch)
    monkeypatch.setattr(demo_main.sys, "platform", "darwin")
    mode, why = demo_main.choose("auto")
    assert mode == "loopback" and "not Linux (darwin)" in why


def test_auto_builds_then_runs_kube_when_binaries_not_built(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Issue 12: a host that can capture shows the capture demo; a fresh one builds first, saying so.
    _capable(monkeypatch)
    monkeypatch.setattr(cluster, "cached_bin_dir", lambda: None)
    assert demo_main.choose("auto") == ("kube", "")
    built: list[bool] = []
    monkeypatch.setattr(cluster, "build", lambda show_progress=False: built.append(show_progress) or Path("/b"))
    ran: list[list[str]] = []
    from istiod_py.demo import kube, run

    monkeypatch.setattr(kube, "run", lambda args: ran.append(["kube", *args]) or 0)
    monkeypatch.setattr(run, "main", lambda args: ran.append(["loopback", *args]) or 0)
    assert demo_main.main([]) == 0
    assert built == [True] and ran == [["kube"]]
    assert "building the Kubernetes binaries once" in capsys.readouterr().out


def test_auto_falls_back_to_loopback_when_the_build_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _capable(monkeypatch)
    monkeypatch.setattr(cluster, "cached_bin_dir", lambda: None)

    def fail(show_progress: bool = False) -> Path:
        raise cluster.ClusterError("go: command not found\nmore log")

    monkeypatch.setattr(cluster, "build", fail)
    ran: list[str] = []
    from istiod_py.demo import kube, run

    monkeypatch.setattr(kube, "run", lambda args: ran.append("kube") or 0)
    monkeypatch.setattr(run, "main", lambda args: ran.append("loopback") or 0)
    assert demo_main.main([]) == 0
    out = capsys.readouterr().out
    assert ran == ["loopback"]
    assert "building the Kubernetes binaries failed (go: command not found); running the loopback demo" in out


def test_explicit_mode_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_main.os, "geteuid", lambda: 1000)
    assert demo_main.choose("loopback") == ("loopback", "")
    assert demo_main.choose("kube") == ("kube", "")


def test_kube_mode_refused_with_reason_when_not_root(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _capable(monkeypatch)
    monkeypatch.setattr(demo_main.os, "geteuid", lambda: 1000)
    assert demo_main.main(["--mode", "kube"]) == 2
    assert "--mode kube: not root" in capsys.readouterr().err
    assert demo_main.main(["--mode=bogus"]) == 2


def test_cached_bin_dir_builds_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISTIOD_PY_KUBE_CACHE", str(tmp_path / "cache"))
    assert cluster.cached_bin_dir() is None
    cache = tmp_path / "cache"
    assert not cache.exists() or list(cache.iterdir()) == []  # no lock, no modules: no build started


def test_auto_with_a_loopback_only_flag_runs_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    _capable(monkeypatch)
    monkeypatch.setattr(cluster, "cached_bin_dir", lambda: Path("/cache/bin"))
    mode, why = demo_main.choose("auto", ["--serve", "--delta"])
    assert mode == "loopback" and why.startswith("--delta is a loopback demo flag")
    assert demo_main.choose("auto", ["--xds-port=16010"])[0] == "loopback"
    assert demo_main.choose("auto", ["--serve", "--requests", "5"]) == ("kube", "")
