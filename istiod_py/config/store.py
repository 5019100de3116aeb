"""The file source: loads a config directory, keeps the last good version of any
resource that a later edit breaks, and watches the directory for changes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from istiod_py.registry.aggregate import SourceSnapshot

from .loader import DocMemo, LoadResult, load_file
from .model import Config, ConfigError, SourceUnavailable
from .notify import Notifier
from .scan import Scan, scan_directory

log = logging.getLogger("istiod_py.config")

# Seconds between rescans while file notifications work: only a safety net then
# (a notification the kernel dropped, a filesystem that reports nothing).
SAFETY_POLL_INTERVAL = 2.0


def reject_duplicates(result: LoadResult) -> LoadResult:
    """Two documents defining the same resource (kind, namespace, name) cannot both
    be served: the first in file order wins and the other is reported with both
    files named (Kubernetes would hold only one)."""
    seen: dict[tuple[str, str, str], Config] = {}
    kept: list[Config] = []
    errors = list(result.errors)
    for c in result.configs:
        first = seen.get(c.meta.key)
        if first is None:
            seen[c.meta.key] = c
            kept.append(c)
            continue
        errors.append(
            ConfigError(
                source=c.meta.source,
                doc_index=c.meta.doc_index,
                message=f"duplicate resource: already defined in {first.meta.source} "
                f"(document {first.meta.doc_index}); this one is ignored. Give it another name or remove one.",
                kind=c.meta.kind,
                namespace=c.meta.namespace,
                name=c.meta.name,
            )
        )
    return LoadResult(kept, list(result.services), list(result.endpoint_slices), errors)


def retain_last_good(previous: SourceSnapshot | None, result: LoadResult) -> SourceSnapshot:
    """A resource that fails to load keeps its last good version serving. A
    document too broken to name its resource keeps every resource that its file
    defined before and does not define now."""
    configs = list(result.configs)
    services = list(result.services)
    slices = list(result.endpoint_slices)
    if previous is not None and result.errors:
        have = {c.meta.key for c in configs}
        have_svc = {(s.namespace, s.name) for s in services}
        have_sl = {(s.meta.namespace, s.meta.name) for s in slices}
        broken_keys = {(e.kind, e.namespace, e.name) for e in result.errors if e.kind and e.name}
        broken_files = {e.source for e in result.errors if not (e.kind and e.name)}

        def keep(kind: str, ns: str, name: str, source: str) -> bool:
            return (kind, ns, name) in broken_keys or source in broken_files

        for c in previous.configs:
            if c.meta.key not in have and keep(c.meta.kind, c.meta.namespace, c.meta.name, c.meta.source):
                configs.append(c)
        for s in previous.services:
            if (s.namespace, s.name) not in have_svc and keep("Service", s.namespace, s.name, _src(s)):
                services.append(s)
        for sl in previous.endpoint_slices:
            key = (sl.meta.namespace, sl.meta.name)
            if key not in have_sl and keep("EndpointSlice", key[0], key[1], _src(sl)):
                slices.append(sl)
    return SourceSnapshot(tuple(configs), tuple(services), tuple(slices), tuple(result.errors))


def _unavailable(root: str, problem: str, since: float, kept: bool) -> SourceUnavailable:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
    serving = "serving the last good config" if kept else "no config loaded yet"
    return SourceUnavailable(
        root,
        0,
        f"config directory unavailable since {stamp} ({problem}); {serving}; loading resumes when it is back",
        since=since,
    )


def _src(obj: object) -> str:
    return str(getattr(obj, "source", "") or getattr(getattr(obj, "meta", None), "source", "") or "")


class FileSource:
    """Watches a directory of Istio (and Kubernetes Service/EndpointSlice) YAML.

    The directory failing is not all config deleted: while it is missing,
    unmounted or unreadable (or a subdirectory is), the files last seen there
    keep their last parsed state, a SourceUnavailable error says so (log,
    /debug/configz, /ready), and loading resumes when it is back. Special files
    and symlink loops named *.yaml are skipped with a warning, never opened."""

    name = "files"

    def __init__(
        self,
        root: str | Path,
        on_change: Callable[[SourceSnapshot], None],
        poll_interval: float = 0.1,
        safety_poll_interval: float = SAFETY_POLL_INTERVAL,
    ):
        self.root = Path(root)
        self.on_change = on_change
        # Rescan period while file notifications are unavailable or failed ...
        self.poll_interval = poll_interval
        # ... and while they work (never more often than the above).
        self.safety_poll_interval = safety_poll_interval
        self.notifier: Notifier | None = None
        self.snapshot: SourceSnapshot | None = None
        self._scan = Scan()
        self._task: asyncio.Task[None] | None = None
        # Parsed files by (mtime, size): an edit re-parses only the files it touched,
        # and within a file only the documents it touched.
        self._parsed: dict[str, tuple[int, int, LoadResult]] = {}
        self._docs: dict[str, DocMemo] = {}
        self._good_dev = 0  # the directory's device when it last had files (an unmount changes it)
        self._unavailable_since: float | None = None

    def _root_problem(self, scan: Scan) -> str:
        if scan.root_error:
            return scan.root_error
        if not scan.files and self._good_dev and scan.root_dev != self._good_dev and self._parsed:
            return "it is now an empty directory on another filesystem (unmounted?)"
        return ""

    def _load_directory(self, scan: Scan) -> LoadResult:
        result = LoadResult()
        parsed: dict[str, tuple[int, int, LoadResult]] = {}
        docs: dict[str, DocMemo] = {}
        for path, mtime, size in scan.files:
            hit = self._parsed.get(path)
            if hit is not None and hit[0] == mtime and hit[1] == size:
                one = hit[2]
                docs[path] = self._docs.get(path, {})
            else:
                docs[path] = {}
                one = load_file(path, self._docs.get(path), docs[path])
            parsed[path] = (mtime, size, one)
            result.extend(one)
        # Files that cannot be seen right now keep their last parsed state.
        root_problem = self._root_problem(scan)
        hidden = [str(self.root)] if root_problem else [d for d, _ in scan.unreadable]
        hidden += [p for p, _ in scan.skipped]
        for path, hit in self._parsed.items():
            if path not in parsed and any(path == h or path.startswith(h + os.sep) for h in hidden):
                parsed[path] = hit
                docs[path] = self._docs.get(path, {})
                result.extend(hit[2])
        if root_problem:
            since = self._unavailable_since = self._unavailable_since or time.time()
            result.errors.insert(0, _unavailable(str(self.root), root_problem, since, bool(parsed)))
        else:
            self._unavailable_since = None
            if scan.files:
                self._good_dev = scan.root_dev
        for directory, why in scan.unreadable:
            result.errors.append(
                ConfigError(directory, 0, f"cannot list this directory ({why}); its files keep their last state")
            )
        for path, why in scan.skipped:
            result.errors.append(ConfigError(path, 0, f"skipped: {why}, not a regular file"))
        self._parsed = parsed
        self._docs = docs
        return result

    def load(self) -> SourceSnapshot:
        scan = scan_directory(self.root)
        if scan != self._scan:
            self._log_scan_change(scan)
        self._scan = scan
        result = reject_duplicates(self._load_directory(scan))
        snap = retain_last_good(self.snapshot, result)
        for err in result.errors:
            log.error("config rejected: %s", err)
        self.snapshot = snap
        return snap

    def _log_scan_change(self, scan: Scan) -> None:
        old = self._scan
        problem = self._root_problem(scan)
        if problem and not self._root_problem(old):
            log.error("config directory %s unavailable (%s): serving the last good config", self.root, problem)
        elif not problem and self._unavailable_since is not None:
            log.warning("config directory %s is back: loading it", self.root)
        for path, why in set(scan.skipped) - set(old.skipped):
            log.warning("skipping %s: %s, not a regular file", path, why)

    def errors(self) -> list[ConfigError]:
        return list(self.snapshot.errors) if self.snapshot else []

    def configs(self) -> list[Config]:
        return list(self.snapshot.configs) if self.snapshot else []

    def start(self) -> None:
        self.on_change(self.load())
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def current_poll_interval(self) -> float:
        """The rescan period right now: rare while notifications are known to work."""
        if self.notifier is not None and self.notifier.working:
            return max(self.safety_poll_interval, self.poll_interval)
        return self.poll_interval

    async def _watch(self) -> None:
        """Rescan when the filesystem reports a change under the directory (inotify,
        FSEvents... through watchfiles, see notify.py), and every poll interval
        regardless: the safety poll interval while notifications work, the poll
        interval while they do not. A missed notification costs at most one
        interval; an unchanged directory costs a stat-only walk."""
        wake = asyncio.Event()
        self.notifier = Notifier(self.root, wake, retry_interval=max(self.poll_interval, 1.0))
        notifier_task = asyncio.get_running_loop().create_task(self.notifier.run())
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), self.current_poll_interval())
                wake.clear()
                try:
                    self.notifier.check_root()
                    scan = await asyncio.to_thread(scan_directory, self.root)
                    if scan == self._scan:
                        continue
                    snap = await asyncio.to_thread(self.load)
                    self.on_change(snap)
                except Exception:  # never let a bad file stop the watcher
                    log.exception("reloading %s failed; keeping the last good config", self.root)
        finally:
            notifier_task.cancel()
            self.notifier.working = False
