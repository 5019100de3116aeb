"""Summarize a py-spy `--format raw` (collapsed stacks) profile: top functions by
self and by inclusive samples, with file:line.

    python -m benchmarks.profile_top benchmarks/results/<ts>-sotw.pyspy.txt [-n 25]
    python -m benchmarks.profile_top --categories <profile from --profile-native>

--categories: the event-loop thread's samples (the first thread of a profile
recorded with --threads, as benchmarks.run --profile-native does) by what they
were doing: translation, our xDS/debug Python, gRPC's native code, each
syscall, asyncio, metrics, GC.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Iterator

_FRAME = re.compile(r"^(?P<fn>.*) \((?P<file>[^()]*):(?P<line>\d+)\)$")


def _short(frame: str, lines: bool) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    f = m.group("file")
    for cut in ("/site-packages/", "/work/main/"):
        if cut in f:
            f = f.split(cut, 1)[1]
    return f"{m.group('fn')} ({f}:{m.group('line')})" if lines else f"{m.group('fn')} ({f})"


def _stacks(path: str) -> Iterator[tuple[str, list[str], int]]:
    """(stack, frames without py-spy's process frame, sample count) per row."""
    with open(path, encoding="utf-8") as f:
        rows = f.readlines()
    for raw in rows:
        stack, _, count = raw.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if frames[0].startswith("process "):
            frames = frames[1:]
        yield stack, frames, int(count)


def summarize(path: str, n: int, lines: bool = True) -> str:
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for _, raw_frames, c in _stacks(path):
        total += c
        frames = [_short(f, lines) for f in raw_frames]
        if frames and frames[0].startswith("thread "):
            frames = frames[1:]
        if not frames:
            continue
        self_c[frames[-1]] += c
        for fr in set(frames):
            incl[fr] += c
    out = [f"total samples: {total}", "", "top self:"]
    out += [f"  {100 * v / total:5.1f}%  {k}" for k, v in self_c.most_common(n)]
    out += ["", "top inclusive:"]
    out += [f"  {100 * v / total:5.1f}%  {k}" for k, v in incl.most_common(n)]
    return "\n".join(out)


_CATEGORIES = (
    # (category, test on the whole stack, test on the leaf frame); first match wins
    ("translation", ("istiod_py/translate/", "istiod_py/cache/resources"), ()),
    ("gc", ("gc_collect",), ()),
    ("metrics", ("prometheus_client", "istiod_py/xds/metrics"), ()),
)
_SYSCALLS = ("sendmsg", "recvmsg", "recv", "write", "read", "epoll_wait", "getpid", "syscall", "eventfd_write")


def categorize(path: str) -> str:
    cats: Counter[str] = Counter()
    main_thread = None
    total = 0
    for stack, frames, c in _stacks(path):
        if not frames or not frames[0].startswith("thread "):
            raise SystemExit(f"{path}: no thread frames (py-spy --threads: benchmarks.run --profile-native)")
        if main_thread is None:
            main_thread = frames[0]
        if frames[0] != main_thread:
            continue
        total += c
        leaf = frames[-1].split(" (")[0]
        cat = next((name for name, anywhere, _ in _CATEGORIES if any(k in stack for k in anywhere)), "")
        if not cat:
            if leaf in _SYSCALLS:
                cat = f"syscall {leaf}"
            elif "grpc" in frames[-1]:
                cat = "gRPC native (cygrpc, core)"
            elif "istiod_py/" in frames[-1]:
                cat = "istiod_py Python (xds, debug, model)"
            elif "asyncio" in frames[-1]:
                cat = "asyncio"
            else:
                cat = "other (interpreter, libc, protobuf outside translation)"
        cats[cat] += c
    out = [f"event-loop thread {main_thread}: {total} samples"]
    out += [f"  {100 * v / max(total, 1):5.1f}%  {k}" for k, v in cats.most_common()]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("profile")
    ap.add_argument("-n", type=int, default=30)
    ap.add_argument("--by-function", action="store_true", help="merge lines of a function")
    ap.add_argument("--categories", action="store_true", help="the event-loop thread by category (needs --threads)")
    a = ap.parse_args()
    print(categorize(a.profile) if a.categories else summarize(a.profile, a.n, not a.by_function))


if __name__ == "__main__":
    main()
