"""File-change notifications for the config directory (watchfiles: inotify,
FSEvents...), and whether they can be trusted right now.

The file source rescans the directory when a notification wakes it. While the
notifications are known to work it polls only as a safety net, rarely; while
they are not (watchfiles missing, the directory gone, a watch that cannot be
set up) it polls at the full rate. `working` is that knowledge: it turns true
only once the watch is set up and has reported (a change or a quiet heartbeat),
and false as soon as it fails or ends."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from pathlib import Path

from .scan import SUFFIXES

log = logging.getLogger("istiod_py.config")

# Milliseconds the file watcher waits for more events before reporting a batch.
# Small, because the push pipeline debounces anyway. It is also how often the
# watcher thread wakes while idle: 50 would save ~0.0013 cores idle (measured on
# a 1,100-file config dir) for 40 ms more detection latency; not worth it.
NOTIFY_STEP_MS = 10
# Milliseconds after which a quiet watcher reports "nothing changed": that report
# is the heartbeat that proves it set up and alive. Until the first one the
# directory is polled at the full rate (every 0.1 s), and right after start-up
# that is when proxies connect: with 1,000 the scans' thread took the GIL from
# the event loop often enough to cost ~0.1 ms of server CPU per connecting proxy
# at 1,000 (docs/benchmarks.md). 200 ms proves the watch five times sooner for
# ~0.5 ms of CPU per second more while idle (7.0 -> 7.5 ms/s measured).
HEARTBEAT_MS = 200


def relevant(_change: object, path: str) -> bool:
    """Whether a filesystem event may change what a scan sees, so it wakes one.

    Config files (*.yaml, *.yml), and Kubernetes' atomic writer: a ConfigMap or
    Secret volume is updated by writing a new `..TIMESTAMP` directory and renaming
    a `..data_tmp` symlink over `..data`; the visible files are symlinks through
    `..data` and do not change themselves. Directories and symlinks of any name
    (a directory of config files renamed or moved in), and anything already gone
    (it may have been such a directory). Other files (editor swap files, logs)
    do not wake the scan."""
    name = os.path.basename(path)
    if name.endswith(SUFFIXES) or name.startswith(".."):
        return True
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return True
    return stat.S_ISDIR(mode) or stat.S_ISLNK(mode)


def _identity(root: Path) -> tuple[int, int] | None:
    """The directory a path names now (symlinks followed), or None if it names none."""
    try:
        st = os.stat(root)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


class Notifier:
    """Runs the watch on `root` and sets `wake` on every relevant change, on
    (re)gaining notifications (a catch-up scan for the set-up window) and on
    losing them (so the caller switches to the full poll rate at once)."""

    def __init__(self, root: Path, wake: asyncio.Event, retry_interval: float) -> None:
        self.root = root
        self.wake = wake
        self.retry_interval = retry_interval
        self.working = False
        self.watched = ""  # the real path the current watch was set up on
        self._identity: tuple[int, int] | None = None  # and its (device, inode)
        self._stop: asyncio.Event | None = None

    def check_root(self) -> None:
        """An inotify watch stays on the directory it was set up on. When the path
        names another directory now (removed and created again, a symlink such as
        git-sync's repointed, a mount swapped), the old watch would go on reporting
        nothing while the full-rate poll is off: set up the watch again."""
        if self.working and self._stop is not None and _identity(self.root) != self._identity:
            log.info("config directory %s is another directory now: watching it", self.root)
            self._stop.set()

    async def run(self) -> None:
        try:
            from watchfiles import awatch
        except ImportError:  # a dependency; the full-rate poll still works
            log.warning("watchfiles is not installed: polling %s", self.root)
            return
        warned = False
        while True:
            self._stop = asyncio.Event()
            self.watched = os.path.realpath(self.root)
            self._identity = _identity(self.root)
            try:
                if self._identity is None:
                    # watchfiles watches a missing path without an error, and its
                    # heartbeats would then pass for a working watch
                    raise FileNotFoundError("the directory does not exist")
                async for changes in awatch(
                    self.root,
                    watch_filter=relevant,
                    debounce=200,
                    step=NOTIFY_STEP_MS,
                    rust_timeout=HEARTBEAT_MS,
                    yield_on_timeout=True,
                    stop_event=self._stop,
                    recursive=True,
                    ignore_permission_denied=True,
                ):
                    if changes or not self.working:
                        self.wake.set()
                    if not self.working:
                        if _identity(self.root) != self._identity:
                            break  # gone or replaced before the watch proved itself: set it up again
                        self.working = True
                        if warned:
                            log.warning("file notifications for %s work again", self.root)
                            warned = False
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if not warned:
                    log.warning("no file notifications for %s (%s): polling it", self.root, e)
                    warned = True
            restarted = self._stop.is_set()
            self.working = False
            # Notifications lost (or the watch is moving to a new target): the full-rate
            # poll covers the gap, and the watch is set up again once it can be.
            self.wake.set()
            if not restarted:
                await asyncio.sleep(self.retry_interval)
