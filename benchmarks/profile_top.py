"""Summarize a py-spy `--format raw` (collapsed stacks) profile: top functions by
self and by inclusive samples, with file:line.

    python -m benchmarks.profile_top benchmarks/results/<ts>-sotw.pyspy.txt [-n 25]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

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


def summarize(path: str, n: int, lines: bool = True) -> str:
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    with open(path, encoding="utf-8") as f:
        rows = f.readlines()
    for raw in rows:
        stack, _, count = raw.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        c = int(count)
        total += c
        frames = [_short(f, lines) for f in stack.split(";")]
        if frames and frames[0].startswith("process "):
            frames = frames[1:]
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("profile")
    ap.add_argument("-n", type=int, default=30)
    ap.add_argument("--by-function", action="store_true", help="merge lines of a function")
    a = ap.parse_args()
    print(summarize(a.profile, a.n, not a.by_function))


if __name__ == "__main__":
    main()
