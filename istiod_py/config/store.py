"""The file source: loads a config directory, keeps the last good version of any
resource that a later edit breaks, and watches the directory for changes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from istiod_py.registry.aggregate import SourceSnapshot

from .loader import DocMemo, LoadResult, load_text
from .model import Config, ConfigError

log = logging.getLogger("istiod_py.config")

# Milliseconds the file watcher waits for more events before reporting a batch.
NOTIFY_STEP_MS = 10


def _fingerprint(root: Path) -> tuple[tuple[str, int, int], ...]:
    out = []
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f.endswith((".yaml", ".yml")):
                p = os.path.join(dirpath, f)
                try:
                    st = os.stat(p)
                except FileNotFoundError:
                    continue
                out.append((p, st.st_mtime_ns, st.st_size))
    return tuple(sorted(out))


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


def _src(obj: object) -> str:
    return str(getattr(obj, "source", "") or getattr(getattr(obj, "meta", None), "source", "") or "")


class FileSource:
    """Watches a directory of Istio (and Kubernetes Service/EndpointSlice) YAML."""

    name = "files"

    def __init__(self, root: str | Path, on_change: Callable[[SourceSnapshot], None], poll_interval: float = 0.1):
        self.root = Path(root)
        self.on_change = on_change
        self.poll_interval = poll_interval
        self.snapshot: SourceSnapshot | None = None
        self._fp: tuple[tuple[str, int, int], ...] = ()
        self._task: asyncio.Task[None] | None = None
        # Parsed files by (mtime, size): an edit re-parses only the files it touched,
        # and within a file only the documents it touched.
        self._parsed: dict[str, tuple[int, int, LoadResult]] = {}
        self._docs: dict[str, DocMemo] = {}

    def _load_directory(self) -> LoadResult:
        result = LoadResult()
        if not self.root.is_dir():
            result.errors.append(
                ConfigError(str(self.root), 0, "config directory does not exist or is not a directory")
            )
            return result
        parsed: dict[str, tuple[int, int, LoadResult]] = {}
        docs: dict[str, DocMemo] = {}
        for path, mtime, size in self._fp:
            hit = self._parsed.get(path)
            if hit is not None and hit[0] == mtime and hit[1] == size:
                one = hit[2]
                docs[path] = self._docs.get(path, {})
            else:
                try:
                    with open(path, encoding="utf-8") as f:
                        text = f.read()
                except (OSError, UnicodeDecodeError) as exc:
                    one = LoadResult(errors=[ConfigError(path, 0, f"cannot read file: {exc}")])
                else:
                    docs[path] = {}
                    one = load_text(text, path, self._docs.get(path), docs[path])
            parsed[path] = (mtime, size, one)
            result.extend(one)
        self._parsed = parsed
        self._docs = docs
        return result

    def load(self) -> SourceSnapshot:
        self._fp = _fingerprint(self.root)
        result = reject_duplicates(self._load_directory())
        snap = retain_last_good(self.snapshot, result)
        for err in result.errors:
            log.error("config rejected: %s", err)
        self.snapshot = snap
        return snap

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

    async def _watch(self) -> None:
        """Rescan when the filesystem reports a change under the directory (inotify,
        FSEvents... through watchfiles), and every poll interval regardless: a
        missed or unsupported notification costs at most one interval."""
        wake = asyncio.Event()
        notifier = asyncio.get_running_loop().create_task(self._notifications(wake))
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), self.poll_interval)
                wake.clear()
                try:
                    fp = await asyncio.to_thread(_fingerprint, self.root)
                    if fp == self._fp:
                        continue
                    snap = await asyncio.to_thread(self.load)
                    self.on_change(snap)
                except Exception:  # never let a bad file stop the watcher
                    log.exception("reloading %s failed; keeping the last good config", self.root)
        finally:
            notifier.cancel()

    async def _notifications(self, wake: asyncio.Event) -> None:
        try:
            from watchfiles import awatch
        except ImportError:  # pragma: no cover - a dependency; polling still works
            return
        try:
            # step: how long the watcher waits for more events before reporting a
            # batch. Small, because the push pipeline debounces anyway.
            async for _ in awatch(
                self.root,
                watch_filter=lambda _change, path: path.endswith((".yaml", ".yml")),
                debounce=200,
                step=NOTIFY_STEP_MS,
                recursive=True,
                ignore_permission_denied=True,
            ):
                wake.set()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("no file notifications for %s (%s); polling every %ss", self.root, e, self.poll_interval)
