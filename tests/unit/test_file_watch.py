"""The file source's watcher with the slow safety poll: every kind of change is
seen through real notifications (watchfiles on inotify) well under a second, the
Kubernetes atomic writer's `..data` symlink swap included, and the poll alone
still catches a change when notifications are unavailable."""

from __future__ import annotations

import asyncio
import builtins
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from istiod_py.config.store import FileSource
from istiod_py.registry.aggregate import SourceSnapshot

pytestmark = pytest.mark.timeout(30)

# Far longer than any detection below may take: only a notification can explain it.
SAFETY = 30.0
LIMIT = 1.0  # seconds from the change to the new snapshot


def service_entry(name: str, address: str = "10.0.0.1") -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
        f"metadata: {{name: {name}, namespace: default}}\n"
        f"spec: {{hosts: [{name}.example.com], ports: [{{number: 80, name: http, protocol: HTTP}}],"
        f" resolution: STATIC, endpoints: [{{address: {address}}}]}}\n"
    )


def addresses(snap: SourceSnapshot) -> dict[str, str]:
    return {c.meta.name: c.spec.endpoints[0].address for c in snap.configs}


class Watched:
    """A started FileSource and every snapshot it reported, with when."""

    def __init__(self, root: Path, **kwargs: Any) -> None:
        self.seen: list[tuple[float, SourceSnapshot]] = []
        self.src = FileSource(root, lambda snap: self.seen.append((time.monotonic(), snap)), **kwargs)

    async def until(self, want: Callable[[dict[str, str]], bool], since: float, limit: float = LIMIT) -> float:
        """Seconds from `since` to the first snapshot satisfying `want`; fails after 5 s."""
        deadline = since + 5
        while time.monotonic() < deadline:
            for at, snap in self.seen:
                if at >= since and want(addresses(snap)):
                    took = at - since
                    assert took < limit, f"seen after {took:.2f} s, limit {limit} s"
                    return took
            await asyncio.sleep(0.01)
        last = addresses(self.seen[-1][1]) if self.seen else None
        raise AssertionError(f"change not seen within 5 s; last snapshot {last}")


async def notifying(src: FileSource) -> None:
    """Until the watch is set up and has reported: the slow poll is in force."""
    deadline = time.monotonic() + 5
    while not (src.notifier is not None and src.notifier.working):
        assert time.monotonic() < deadline, "notifications never started working"
        await asyncio.sleep(0.02)


@pytest.fixture
async def watched(tmp_path: Path) -> AsyncIterator[Watched]:
    (tmp_path / "a.yaml").write_text(service_entry("a"))
    w = Watched(tmp_path, safety_poll_interval=SAFETY)
    w.src.start()
    try:
        await notifying(w.src)
        assert w.src.current_poll_interval() == SAFETY  # the slow poll is what runs below
        yield w
    finally:
        await w.src.stop()


async def test_in_place_edit(tmp_path: Path, watched: Watched) -> None:
    t = time.monotonic()
    with open(tmp_path / "a.yaml", "r+") as f:  # same inode, rewritten
        f.truncate(0)
        f.write(service_entry("a", "10.0.0.2"))
    await watched.until(lambda a: a == {"a": "10.0.0.2"}, t)


async def test_atomic_rename_of_a_temp_file(tmp_path: Path, watched: Watched) -> None:
    # editors and `kubectl`-style tools: write a temp file (any name), rename over
    (tmp_path / ".a.yaml.tmp~").write_text(service_entry("a", "10.0.0.3"))
    t = time.monotonic()
    os.replace(tmp_path / ".a.yaml.tmp~", tmp_path / "a.yaml")
    await watched.until(lambda a: a == {"a": "10.0.0.3"}, t)


async def test_file_deletion(tmp_path: Path, watched: Watched) -> None:
    t = time.monotonic()
    (tmp_path / "b.yaml").write_text(service_entry("b"))
    await watched.until(lambda a: set(a) == {"a", "b"}, t)
    t = time.monotonic()
    (tmp_path / "b.yaml").unlink()
    await watched.until(lambda a: set(a) == {"a"}, t)


async def test_new_subdirectory_with_a_file(tmp_path: Path, watched: Watched) -> None:
    t = time.monotonic()
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "c.yaml").write_text(service_entry("c"))
    await watched.until(lambda a: set(a) == {"a", "c"}, t)
    # and a directory of config files moved in whole: only the directory has an event
    staging = tmp_path.parent / f"{tmp_path.name}-staging"
    staging.mkdir()
    (staging / "d.yaml").write_text(service_entry("d"))
    t = time.monotonic()
    staging.rename(tmp_path / "moved")
    await watched.until(lambda a: set(a) == {"a", "c", "d"}, t)
    t = time.monotonic()
    (tmp_path / "moved").rename(tmp_path.parent / f"{tmp_path.name}-gone")  # and moved out
    await watched.until(lambda a: set(a) == {"a", "c"}, t)


def write_payload(volume: Path, files: dict[str, str], generation: int) -> str:
    """kubelet's atomic writer (pkg/volume/util/atomic_writer.go), first half: the
    new files go to a new `..TIMESTAMP` directory, nothing visible changes yet."""
    stamp = f"..2026_12_04_20_00_00.{generation:09d}"
    (volume / stamp).mkdir()
    for name, text in files.items():
        (volume / stamp / name).write_text(text)
    return stamp


def swap_payload(volume: Path, stamp: str, files: dict[str, str]) -> str | None:
    """Second half: a `..data_tmp` symlink to the new directory renamed over
    `..data` (the one step that changes what the visible files read), then the
    top-level symlinks through `..data` for new keys. Returns the old directory."""
    old = os.readlink(volume / "..data") if (volume / "..data").is_symlink() else None
    os.symlink(stamp, volume / "..data_tmp")
    os.replace(volume / "..data_tmp", volume / "..data")
    for name in files:
        if not (volume / name).is_symlink():
            os.symlink(f"..data/{name}", volume / name)
    return old


async def test_configmap_data_symlink_swap(tmp_path: Path) -> None:
    files = {"mesh.yaml": service_entry("a", "10.0.0.1")}
    swap_payload(tmp_path, write_payload(tmp_path, files, 1), files)
    w = Watched(tmp_path, safety_poll_interval=SAFETY)
    w.src.start()
    try:
        assert addresses(w.seen[0][1]) == {"a": "10.0.0.1"}
        await notifying(w.src)
        for generation in (2, 3, 4):
            files = {"mesh.yaml": service_entry("a", f"10.0.0.{generation}")}
            stamp = write_payload(tmp_path, files, generation)
            # kubelet swaps at once; the pause makes the swap the only event left
            # that can tell (its files' own events have woken a scan that saw nothing)
            await asyncio.sleep(0.4)
            t = time.monotonic()
            old = swap_payload(tmp_path, stamp, files)
            await w.until(lambda a, g=generation: a == {"a": f"10.0.0.{g}"}, t)  # type: ignore[misc]
            assert old is not None
            shutil.rmtree(tmp_path / old)  # kubelet's last step
        # a new key: a new top-level symlink through `..data`
        files = {"mesh.yaml": service_entry("a", "10.0.0.4"), "more.yaml": service_entry("b", "10.0.0.5")}
        stamp = write_payload(tmp_path, files, 5)
        await asyncio.sleep(0.4)
        t = time.monotonic()
        swap_payload(tmp_path, stamp, files)
        await w.until(lambda a: a == {"a": "10.0.0.4", "b": "10.0.0.5"}, t)
    finally:
        await w.src.stop()


async def test_the_poll_alone_catches_a_change_without_notifications(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_watchfiles(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "watchfiles" or name.startswith("watchfiles."):
            raise ImportError("blocked by the test")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_watchfiles)
    (tmp_path / "a.yaml").write_text(service_entry("a"))
    w = Watched(tmp_path, poll_interval=0.2, safety_poll_interval=SAFETY)
    w.src.start()
    try:
        await asyncio.sleep(0.3)
        assert w.src.notifier is not None and not w.src.notifier.working
        assert w.src.current_poll_interval() == 0.2
        t = time.monotonic()
        (tmp_path / "a.yaml").write_text(service_entry("a", "10.0.0.9"))
        await w.until(lambda a: a == {"a": "10.0.0.9"}, t)
    finally:
        await w.src.stop()


async def test_failing_notifications_fall_back_to_the_full_poll_rate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import watchfiles

    calls: list[float] = []

    async def failing_awatch(*args: Any, **kwargs: Any) -> AsyncIterator[set[Any]]:
        calls.append(time.monotonic())
        raise OSError(28, "inotify watch limit reached")
        yield set()  # an async generator, like awatch

    monkeypatch.setattr(watchfiles, "awatch", failing_awatch)
    (tmp_path / "a.yaml").write_text(service_entry("a"))
    w = Watched(tmp_path, poll_interval=0.2, safety_poll_interval=SAFETY)
    w.src.start()
    try:
        await asyncio.sleep(0.3)
        assert calls and w.src.notifier is not None and not w.src.notifier.working
        assert w.src.current_poll_interval() == 0.2
        t = time.monotonic()
        (tmp_path / "a.yaml").write_text(service_entry("a", "10.0.0.8"))
        await w.until(lambda a: a == {"a": "10.0.0.8"}, t)
    finally:
        await w.src.stop()


async def test_a_repointed_symlink_root_is_watched_at_its_new_target(tmp_path: Path) -> None:
    # git-sync style: the config dir is a symlink swapped to a new checkout; nothing
    # changes inside the old target, so the safety poll notices the swap, and then
    # the new target is what notifications cover
    for rev in ("r1", "r2"):
        (tmp_path / rev).mkdir()
        (tmp_path / rev / "a.yaml").write_text(service_entry("a", "10.0.1.1" if rev == "r1" else "10.0.2.1"))
    os.symlink("r1", tmp_path / "current")
    w = Watched(tmp_path / "current", safety_poll_interval=0.5)
    w.src.start()
    try:
        assert addresses(w.seen[0][1]) == {"a": "10.0.1.1"}
        await notifying(w.src)
        assert w.src.notifier.watched == os.path.realpath(tmp_path / "r1")
        os.symlink("r2", tmp_path / "current.tmp")
        t = time.monotonic()
        os.replace(tmp_path / "current.tmp", tmp_path / "current")
        await w.until(lambda a: a == {"a": "10.0.2.1"}, t, limit=3)
        deadline = time.monotonic() + 5
        r2 = os.path.realpath(tmp_path / "r2")
        while not (w.src.notifier is not None and w.src.notifier.working and w.src.notifier.watched == r2):
            assert time.monotonic() < deadline, "the new target is not watched"
            await asyncio.sleep(0.02)
        w.src.safety_poll_interval = SAFETY  # from here on only notifications can be this fast
        await asyncio.sleep(0.6)  # the pending 0.5 s poll has run
        t = time.monotonic()
        (tmp_path / "r2" / "a.yaml").write_text(service_entry("a", "10.0.2.2"))
        await w.until(lambda a: a == {"a": "10.0.2.2"}, t)
    finally:
        await w.src.stop()


async def test_config_dir_removed_and_created_again(tmp_path: Path) -> None:
    # the old watch stays on the removed directory and would report nothing more
    root = tmp_path / "cfg"
    root.mkdir()
    (root / "a.yaml").write_text(service_entry("a", "10.0.3.1"))
    w = Watched(root, safety_poll_interval=SAFETY)
    w.src.start()
    try:
        await notifying(w.src)
        shutil.rmtree(root)
        await asyncio.sleep(0.3)
        root.mkdir()
        t = time.monotonic()
        (root / "a.yaml").write_text(service_entry("a", "10.0.3.2"))
        await w.until(lambda a: a == {"a": "10.0.3.2"}, t)
        await notifying(w.src)  # watching the new directory, so polling slowly again
        assert w.src.current_poll_interval() == SAFETY
        await asyncio.sleep(0.3)
        t = time.monotonic()
        (root / "a.yaml").write_text(service_entry("a", "10.0.3.3"))
        await w.until(lambda a: a == {"a": "10.0.3.3"}, t)
    finally:
        await w.src.stop()


async def test_the_safety_poll_catches_what_no_notification_reports(tmp_path: Path) -> None:
    # a write through a hard link outside the watched directory: inotify reports
    # it to watches on the directory it was made through, not to this one
    root = tmp_path / "cfg"
    root.mkdir()
    (root / "a.yaml").write_text(service_entry("a", "10.0.4.1"))
    os.link(root / "a.yaml", tmp_path / "elsewhere.yaml")
    w = Watched(root, safety_poll_interval=0.5)
    control = Watched(root, safety_poll_interval=SAFETY)  # notifications only, in effect
    w.src.start()
    control.src.start()
    try:
        await notifying(w.src)
        await notifying(control.src)
        assert w.src.current_poll_interval() == 0.5
        await asyncio.sleep(0.6)
        t = time.monotonic()
        with open(tmp_path / "elsewhere.yaml", "r+") as f:
            f.truncate(0)
            f.write(service_entry("a", "10.0.4.2"))
        await w.until(lambda a: a == {"a": "10.0.4.2"}, t, limit=1.5)
        await asyncio.sleep(1.0)
        changed = [at for at, snap in control.seen if at >= t and addresses(snap) == {"a": "10.0.4.2"}]
        assert not changed, "a notification reported the write, so this tests nothing about the poll"
    finally:
        await w.src.stop()
        await control.src.stop()


async def test_a_watch_on_a_missing_directory_never_counts_as_working(tmp_path: Path) -> None:
    # watchfiles watches a missing path without an error and sends heartbeats for
    # it: taken as proof, the full-rate poll would stop and the directory, once
    # created, would wait for the safety poll
    from istiod_py.config.notify import HEARTBEAT_MS, Notifier

    root = tmp_path / "not-yet"
    n = Notifier(root, asyncio.Event(), retry_interval=0.1)
    task = asyncio.get_running_loop().create_task(n.run())
    try:
        await asyncio.sleep(3 * HEARTBEAT_MS / 1000 + 0.3)
        assert not n.working
        root.mkdir()
        deadline = time.monotonic() + 5
        while not n.working and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert n.working  # and once it exists, the watch is set up on it
    finally:
        task.cancel()
