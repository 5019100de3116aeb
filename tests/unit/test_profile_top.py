"""benchmarks/profile_top.py: the event-loop thread of a py-spy --threads profile by category."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.profile_top import categorize, summarize

LOOP = "thread (1): MainThread"
ROWS = [
    f"process 7;{LOOP};run (asyncio/base_events.py:1);generate (istiod_py/translate/generate.py:9) 6",
    f"{LOOP};write (istiod_py/xds/stream.py:3);sendmsg (libc.so.6) 3",
    f"{LOOP};_read (istiod_py/xds/stream.py:5) 1",
    "thread (2): event_engine;epoll_wait (libc.so.6) 50",
]


def test_categories_count_only_the_first_thread(tmp_path: Path) -> None:
    p = tmp_path / "p.txt"
    p.write_text("\n".join(ROWS) + "\n")
    out = categorize(str(p))
    assert "10 samples" in out
    assert " 60.0%  translation" in out
    assert " 30.0%  syscall sendmsg" in out
    assert " 10.0%  istiod_py Python" in out
    assert "epoll" not in out  # another thread's samples
    assert "total samples: 60" in summarize(str(p), 5)


def test_categories_need_thread_frames(tmp_path: Path) -> None:
    p = tmp_path / "p.txt"
    p.write_text("run (asyncio/base_events.py:1);sendmsg (libc.so.6) 3\n")
    with pytest.raises(SystemExit, match="--threads"):
        categorize(str(p))
