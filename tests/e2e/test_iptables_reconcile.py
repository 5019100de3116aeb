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


# UDP "DNS" server: answers every datagram with its name (argv[2]), bound to argv[3].
UDP_SERVER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[3] if len(sys.argv) > 3 else "0.0.0.0", int(sys.argv[1])))
while True:
    data, addr = s.recvfrom(512)
    s.sendto(sys.argv[2].encode(), addr)
"""

UDP_QUERY = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
s.connect((sys.argv[1], 53))
s.send(b"query")
print(s.recv(512).decode())
"""


def _udp53(pod: Pod, host: str, uid: int | None = None) -> str:
    """The answer to a datagram sent to HOST:53 (retried while the servers start)."""
    for _ in range(20):
        proc = pod.run([sys.executable, "-c", UDP_QUERY, host], uid=uid, check=False, timeout=10)
        if proc.returncode == 0:
            return proc.stdout.strip()
    raise AssertionError(f"no answer from {host}:53 as uid {uid}: {proc.stderr[-300:]}")


def test_dns_capture_rules_steer_udp_and_tcp_53_to_the_agent_port(lab: NetnsLab) -> None:
    client, dns, other = lab.pod("client"), lab.pod("dns"), lab.pod("other")
    for pod in (dns, other):
        pod.start([sys.executable, "-c", UDP_SERVER, "53", f"upstream {pod.name}"])
        _listen(pod, 53)
    # Stands in for the agent's DNS proxy as Istio's agent runs it: on 127.0.0.1:15053 (the
    # address REDIRECT delivers to, so answers leave from it) and as the proxy UID, so its
    # answers meet the app's query in conntrack zone 2 and are un-NATed to the nameserver's address.
    client.start([sys.executable, "-c", UDP_SERVER, "15053", "agent", "127.0.0.1"], uid=1337, gid=1337)
    _listen(client, 15053)
    assert _udp53(client, dns.ip) == "upstream dns"  # before: straight to the nameserver

    assert _cli(client, "--redirect-dns", "--dns-servers", dns.ip) == "iptables: applied"
    # The app's DNS to the nameserver, UDP and TCP, lands on 15053 (TCP keeps the original destination).
    assert _udp53(client, dns.ip) == "agent"
    assert _connect(client, dns.ip, 53) == f"15053 {dns.ip}:53"
    # The proxy's own queries (UID 1337) go upstream; DNS to a server not in the list is not captured.
    assert _udp53(client, dns.ip, uid=1337) == "upstream dns"
    assert _udp53(client, other.ip) == "upstream other"
    raw = [line for line in _ns(client, "iptables-save", "-t", "raw").splitlines() if line.startswith("-A")]
    assert "-A OUTPUT -j ISTIO_OUTPUT_DNS" in raw and "-A PREROUTING -j ISTIO_INBOUND" in raw

    assert _cli(client, "--redirect-dns", "--dns-servers", dns.ip) == "iptables: unchanged"
    assert _cli(client, "--clean").startswith("iptables: cleaned")
    assert _istio_lines(client) == []
    assert _udp53(client, dns.ip) == "upstream dns"
