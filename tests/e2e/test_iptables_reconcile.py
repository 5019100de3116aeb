"""`istiod-py iptables` run twice, with other flags, and with --clean, against real
iptables in a network namespace of its own: the second identical run changes nothing
(no "Chain already exists"), other flags replace the rules, --clean leaves no
ISTIO_* chain, no jump, no TPROXY mark rule or policy route. Capture still steers
a real connection after a reconcile (tests/e2e/test_capture_iptables.py has the
listener helpers)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.e2e.test_capture_iptables import _connect, _listen
from tests.support.netns import NetnsLab, Pod, netns_lab


@pytest.fixture
def lab() -> Iterator[NetnsLab]:
    with netns_lab() as lab:
        yield lab


def _cli(pod: Pod, *flags: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "istiod_py.cli", "iptables", "--netns", pod.netns, *flags],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stderr.strip()


def _ns(pod: Pod, *cmd: str) -> str:
    return subprocess.run(["ip", "netns", "exec", pod.netns, *cmd], capture_output=True, text=True, check=True).stdout


def _istio_lines(pod: Pod) -> list[str]:
    return [line for line in _ns(pod, "iptables-save").splitlines() if "ISTIO" in line]


def test_apply_twice_reconcile_and_clean_with_real_iptables(lab: NetnsLab) -> None:
    client, server = lab.pod("client"), lab.pod("server")
    assert _cli(client) == "iptables: applied"
    first = _istio_lines(client)
    assert "-A OUTPUT -j ISTIO_OUTPUT" in first and ":ISTIO_REDIRECT - [0:0]" in first
    assert _cli(client) == "iptables: unchanged"  # the init step run again: no error, no duplicate
    assert _istio_lines(client) == first

    # Other flags: the old rules go, the new ones come, nothing doubled.
    assert _cli(client, "-o", "9999") == "iptables: reconciled"
    now = _istio_lines(client)
    assert "-A ISTIO_OUTPUT -p tcp -m tcp --dport 9999 -j RETURN" in now
    assert now.count("-A OUTPUT -j ISTIO_OUTPUT") == 1 and now.count("-A PREROUTING -p tcp -j ISTIO_INBOUND") == 1
    # ... and capture still steers: the client's outbound call lands on its 15001.
    _listen(client, 15001)
    _listen(server, 8080)
    assert _connect(client, server.ip, 8080).startswith(f"15001 {server.ip}:8080")
    _listen(server, 9999)
    assert _connect(client, server.ip, 9999).startswith("9999 ")  # the newly excluded port is not redirected

    # TPROXY over REDIRECT, twice: one fwmark rule, the local route in table 133.
    assert _cli(client, "-m", "TPROXY") == "iptables: reconciled"
    assert _cli(client, "-m", "TPROXY") == "iptables: unchanged"
    assert _ns(client, "ip", "rule").count("fwmark 0x539 lookup 133") == 1
    assert "local default dev lo" in _ns(client, "ip", "route", "show", "table", "133")

    # clean (with REDIRECT flags) removes everything, TPROXY's marks and routing included.
    assert _cli(client, "--clean").startswith("iptables: cleaned")
    assert _istio_lines(client) == []
    assert [r for r in _ns(client, "iptables-save", "-t", "mangle").splitlines() if r.startswith("-A")] == []
    assert "fwmark" not in _ns(client, "ip", "rule")
    assert _ns(client, "ip", "route", "show", "table", "133").strip() == ""
    assert _cli(client, "--clean").startswith("iptables: cleaned")  # nothing left: still no error
    assert _istio_lines(client) == []
    assert _connect(client, server.ip, 8080).startswith("8080 ")  # no capture any more
