"""`./demo.sh --serve` (python -m istiod_py.demo.run --serve) stopped with SIGTERM or
Ctrl-C stops every process it started (control plane, Envoys, apps) and keeps its logs."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.support.net import free_port

REPO = Path(__file__).resolve().parents[2]


def _descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.e2e
@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_demo_serve_stops_every_process(envoy_bin: str, how: str) -> None:
    # Its own session, so "Ctrl-C" can be sent the way a terminal sends it: to the whole
    # foreground process group.
    demo = subprocess.Popen(
        [sys.executable, "-m", "istiod_py.demo.run", "--serve", "--requests", "5",
         "--xds-port", str(free_port()), "--debug-port", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, start_new_session=True,
        env={**os.environ, "PATH": f"{Path(envoy_bin).parent}{os.pathsep}{os.environ.get('PATH', '')}"},
    )  # fmt: skip
    assert demo.stdout is not None
    out: list[str] = []
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        for line in demo.stdout:
            out.append(line)
            if line.startswith("running;"):
                break
            assert time.monotonic() < deadline, "".join(out)
        else:
            pytest.fail("demo exited before serving:\n" + "".join(out))
        children = _descendants(demo.pid)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        assert len(children) >= 9, names  # control plane + 4 Envoys + 4 apps
        assert "istiod_py.cli serve" in names and "envoy" in names and "istiod_py.demo.app" in names
        if how == "SIGTERM":
            demo.send_signal(signal.SIGTERM)
        else:
            os.killpg(demo.pid, signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
        out.append(rest)
        text = "".join(out)
        assert demo.returncode == (143 if how == "SIGTERM" else 130), text
        _, alive = psutil.wait_procs(children, timeout=5)
        assert not [p for p in alive if _alive(p)], f"left running: {alive}"
        m = re.search(r"stopped; logs: (\S+)", text)
        assert m, text
        logs = Path(m.group(1))
        assert (logs / "istiod.log").is_file() and (logs / "productpage-v1-envoy.log").is_file()
        shutil.rmtree(logs)
    finally:
        for p in [*children, psutil.Process(demo.pid)] if demo.poll() is None else children:
            if _alive(p):
                p.kill()
        demo.wait(10)
