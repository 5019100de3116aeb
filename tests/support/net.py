"""Loopback address and port allocation.

With captureMode NONE every workload is one address in 127.0.0.0/8, so many
sidecars can bind the same port on distinct IPs. Linux answers on the whole /8
through ``lo`` without configuration.

Addresses are unique within one pytest process (a process-wide counter) and, to
keep suites running side by side on one host apart, each process claims its own
second octet (starting from one derived from its pid). Ports are still checked by
binding.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
import threading
import time

# 127.0.0.0/24 is left alone: 127.0.0.1 hosts real services on dev machines.
_FIRST_OCTET_BASE = 16
_FIRST_OCTET_SPAN = 224  # second octet in [16, 240)
_CLAIM_PORT = 47999


class LoopbackAllocator:
    """Hands out unique addresses 127.A.B.C (A fixed per process, B.C counting).

    The block A is claimed for the process's lifetime by binding a marker socket on
    127.A.255.254:_CLAIM_PORT, so two pytest processes on one host never share a block.
    """

    def __init__(self, block: int | None = None) -> None:
        self._claim: socket.socket | None = None
        if block is None:
            block = self._claim_block(_FIRST_OCTET_BASE + (os.getpid() % _FIRST_OCTET_SPAN))
        if not 1 <= block <= 254:
            raise ValueError(f"loopback block must be in 1..254, got {block}")
        self.block = block
        self._counter = itertools.count(0)
        self._lock = threading.Lock()

    def _claim_block(self, start: int) -> int:
        for i in range(_FIRST_OCTET_SPAN):
            block = _FIRST_OCTET_BASE + (start - _FIRST_OCTET_BASE + i) % _FIRST_OCTET_SPAN
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((f"127.{block}.255.254", _CLAIM_PORT))
            except OSError:
                s.close()
                continue
            self._claim = s  # held (bound, never listening) until the process exits
            return block
        return start  # every block claimed: share one, ports are still checked by binding

    def ip(self) -> str:
        """A fresh loopback address never returned before by this allocator."""
        with self._lock:
            n = next(self._counter)
        # 254 usable host numbers (.1 .. .254) per third octet; 127.A.255.x is reserved.
        third, fourth = divmod(n, 254)
        if third > 254:
            raise RuntimeError("loopback allocator exhausted (64k addresses)")
        return f"127.{self.block}.{third}.{fourth + 1}"

    def ips(self, count: int) -> list[str]:
        return [self.ip() for _ in range(count)]


_default_allocator = LoopbackAllocator()


def allocate_ip() -> str:
    """A fresh loopback address from the process-wide allocator."""
    return _default_allocator.ip()


class Loopback:
    """Per-test view of the process-wide allocator (the ``loopback`` fixture)."""

    def ip(self) -> str:
        """A fresh 127.A.B.C address, never handed out before in this process."""
        return _default_allocator.ip()

    def ips(self, count: int) -> list[str]:
        return _default_allocator.ips(count)


# free_port hands out ports from here: below the kernel's ephemeral range, which
# outgoing connections draw their local ports from (a port picked by binding to
# port 0 came from that range, and an outgoing connection took one of them
# between the pick and the server's bind: "address already in use" in CI), and
# above the fixed ports tests and the product use (15000-15090, 9090, ...).
_PORT_RANGE = (20000, 32768)
_handed: set[tuple[str, int]] = set()
_port_rng = random.Random(os.getpid())
_port_lock = threading.Lock()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now, never handed out before by this process,
    outside the ephemeral range when the kernel leaves room below it (see
    _PORT_RANGE); otherwise one the kernel picks (bind to port 0, close)."""
    high = min(_PORT_RANGE[1], _ephemeral_low())
    with _port_lock:
        for _ in range(200 if high > _PORT_RANGE[0] + 1000 else 0):
            port = _port_rng.randrange(_PORT_RANGE[0], high)
            if (host, port) not in _handed and port_is_free(host, port):
                _handed.add((host, port))
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        picked: int = s.getsockname()[1]
        return picked


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until something accepts TCP connections on host:port, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    last_error: OSError | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as e:
            last_error = e
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s (last error: {last_error})")
