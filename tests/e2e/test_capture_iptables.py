"""The capture rules of `istiod-py iptables`, applied by real iptables inside
network-namespace pods (tests/support/netns.py), steer real connections: inbound
to 15006, outbound to 15001 with the original destination kept, the proxy UID
exempt, and annotation-excluded ports left alone. Plain Python listeners stand
in for Envoy's ports here so the rules are tested on their own."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from istiod_py.inject.iptables import CaptureConfig, from_annotations
from tests.support.netns import PROXY_UID, NetnsLab, Pod, netns_lab

# Accepts on PORT and answers each connection with "<port> <original dst>" (SO_ORIGINAL_DST).
LISTENER = r"""
import socket, struct, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(16)
while True:
    c, _ = s.accept()
    try:
        raw = c.getsockopt(socket.SOL_IP, 80, 16)
        port, ip = struct.unpack("!2xH4s8x", raw)
        dst = socket.inet_ntoa(ip) + ":" + str(port)
    except OSError:
        dst = "-"
    c.sendall(f"{sys.argv[1]} {dst}\n".encode()); c.close()
"""

CONNECT = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
print(c.recv(200).decode().strip())
"""


@pytest.fixture
def lab() -> Iterator[NetnsLab]:
    with netns_lab() as lab:
        yield lab


def _listen(pod: Pod, port: int) -> None:
    pod.start([sys.executable, "-c", LISTENER, str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _connect(pod: Pod, host: str, port: int, uid: int | None = None) -> str:
    deadline = time.monotonic() + 5
    while True:
        proc = pod.run([sys.executable, "-c", CONNECT, host, str(port)], uid=uid, check=False, timeout=10)
        if proc.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)  # the listener may still be starting
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_lab_pods_reach_each_other_and_are_cleaned_up() -> None:
    with netns_lab() as lab:
        a, b = lab.pod("a"), lab.pod("b")
        _listen(b, 8080)
        assert _connect(a, b.ip, 8080).startswith("8080 ")
        names = {a.netns, b.netns}
        bridge = lab.bridge
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(n in listed for n in names)
    assert subprocess.run(["ip", "link", "show", bridge], capture_output=True).returncode != 0


def test_capture_redirects_inbound_and_outbound(lab: NetnsLab) -> None:
    client, server = lab.pod("client"), lab.pod("server")
    cfg = from_annotations({"traffic.sidecar.istio.io/excludeInboundPorts": "9090"})
    client.capture(cfg)
    server.capture(cfg)
    assert "-A ISTIO_OUTPUT -j ISTIO_REDIRECT" in server.iptables_save()
    for pod in (client, server):
        for port in (15001, 15006, 8080, 9090):
            _listen(pod, port)
    vip = lab.vip(20)
    # App -> VIP: captured to 15001 with the VIP as original destination.
    assert _connect(client, vip, 80) == f"15001 {vip}:80"
    # App -> other pod: captured outbound too (the server sees nothing yet).
    assert _connect(client, server.ip, 8080) == f"15001 {server.ip}:8080"
    # The proxy UID is not captured: its connection reaches the server pod, whose
    # inbound capture sends it to 15006 with the pod's own port as original destination.
    assert _connect(client, server.ip, 8080, uid=PROXY_UID) == f"15006 {server.ip}:8080"
    # An annotation-excluded inbound port reaches the app directly.
    assert _connect(client, server.ip, 9090, uid=PROXY_UID).startswith("9090 ")
    # Loopback is never captured.
    assert _connect(client, "127.0.0.1", 8080).startswith("8080 ")


def test_excluded_outbound_port_and_cidr_are_not_captured(lab: NetnsLab) -> None:
    client, server = lab.pod("client"), lab.pod("server")
    client.capture(
        CaptureConfig(
            outbound_ports_exclude="7070", outbound_ip_ranges_exclude=f"{server.ip}/32", inbound_ports_include=""
        )
    )
    for port in (15001, 7070, 8080):
        _listen(server, port)
    _listen(client, 15001)
    other = lab.pod("other")
    _listen(other, 8080)
    assert _connect(client, other.ip, 8080) == f"15001 {other.ip}:8080"
    assert _connect(client, server.ip, 8080).startswith("8080 ")  # excluded CIDR
    _listen(other, 7070)
    assert _connect(client, other.ip, 7070).startswith("7070 ")  # excluded port
