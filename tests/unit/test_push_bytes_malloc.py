"""malloc_policy: with a fixed mmap threshold a large block (a response, or
gRPC's copy of one) gets its own mapping, returned to the OS when freed,
instead of a heap-arena chunk that glibc keeps (see malloc_policy.py). Counted
with glibc's own books (mallinfo2: bytes in mmapped blocks), not timed."""

from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path

from istiod_py import malloc_policy

ROOT = Path(__file__).resolve().parents[2]

# Linux with glibc only, as the whole suite (./test.sh runs as root on Linux): no skip.


_FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(f, ctypes.c_size_t) for f in _FIELDS.split(" ")]


def _mmapped() -> int:
    fn = ctypes.CDLL(None).mallinfo2
    fn.restype = _Mallinfo2
    return int(fn().hblkhd)


def _mmapped_while_holding(size: int) -> int:
    before = _mmapped()
    buf = ctypes.create_string_buffer(size)  # malloc'd by ctypes
    during = _mmapped()
    del buf
    return during - before


def _check_in_fresh_process() -> None:
    mb = 2**20
    # glibc's default: freeing a mmapped 16 MB block raises the threshold to 16 MB,
    # so a 2 MB block comes from a heap arena (kept when freed).
    _mmapped_while_holding(16 * mb)
    assert _mmapped_while_holding(2 * mb) == 0
    assert malloc_policy.configure(128 * 1024)
    _mmapped_while_holding(16 * mb)  # no longer raises the threshold
    # Larger than any free heap chunk left above: a new block, now its own mapping.
    assert _mmapped_while_holding(6 * mb) >= 6 * mb


def test_a_fixed_threshold_keeps_large_blocks_in_their_own_mappings() -> None:
    # In a fresh interpreter: malloc's threshold and free chunks are process-wide, so
    # in the test process they depend on every earlier test (the suite's big frees
    # left a free heap chunk larger than 6 MB), and configure() would change malloc
    # for every later test.
    code = "import tests.unit.test_push_bytes_malloc as t; t._check_in_fresh_process(); print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
