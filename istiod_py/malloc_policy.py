"""glibc malloc settings for the server process (`istiod-py serve`).

A push writes one multi-megabyte response per stream, and gRPC copies each into
its core (xds/slots.py ByteBudget): thousands of large short-lived blocks.
glibc serves a block from mmap only above a threshold that it raises to the
size of every mmapped block freed (up to 32 MB), so after the first large
response they all come from the heap arenas, where freed space is kept and
fragmented instead of returned. A fixed threshold keeps every large block in
its own mapping, given back to the OS when freed, at the price of page faults
on every one: at 5,000 services x 2,000 proxies a 1 MiB threshold took the
peak from 820 to 771-781 MB but cost 20-60 % more server CPU in the connect
and the full push (docs/benchmarks.md), so `serve` leaves it off
(--malloc-mmap-threshold-kb) now that the larger causes of peak memory are
gone (before them it was worth 100-250 MB)."""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger("istiod_py")

M_MMAP_THRESHOLD = -3  # glibc malloc.h


def configure(mmap_threshold: int) -> bool:
    """Serve blocks of `mmap_threshold` bytes or more from their own mmap (a
    fixed threshold: glibc's dynamic raising stops). False where the C library
    has no mallopt (not glibc) or refuses the value."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold))
    if not ok:
        log.warning("malloc: mmap threshold %d not accepted; keeping the C library's default", mmap_threshold)
    return ok
