"""List + watch of one Kubernetes resource, in a worker thread.

The official client blocks, so each resource gets one daemon thread that lists,
then watches from the list's resourceVersion with bookmarks, and hands converted
objects to the asyncio loop with `call_soon_threadsafe`; the loop never waits on
the network. (kubernetes_asyncio would avoid the threads, but it trails the
official client's releases and auth plug-ins; ~20 mostly idle threads cost less
than a second client stack.)

No event is lost or applied twice across a watch restart or an API-server restart:
- a watch that ends (server timeout, dropped connection, API server restart)
  resumes from the last resourceVersion seen, bookmarks included, so the server
  replays exactly what came after it;
- when that version is too old (410 Gone) the resource is listed again and the
  list REPLACES the store: objects deleted meanwhile disappear, unchanged ones
  keep their converted object (same identity, so nothing downstream recomputes);
- an event whose object has the resourceVersion already stored is a duplicate
  and is dropped.
Failures back off exponentially (0.2 s doubling to 10 s, reset by a good list).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .client import JsonObj, KubeApiError, KubeClient, resource_path

log = logging.getLogger("istiod_py.kube")

T = TypeVar("T")
Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects


@dataclass(frozen=True)
class Resource:
    kind: str
    group: str
    versions: tuple[str, ...]  # tried in order until the server serves one
    plural: str
    namespaced: bool = True

    def path(self, version: str, namespace: str | None = None) -> str:
        return resource_path(self.group, version, self.plural, namespace if self.namespaced else None)


def object_key(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def resource_version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


@dataclass
class Batch(Generic[T]):
    """What the loop receives: changed objects (None: deleted), or a whole new store."""

    changes: dict[Key, T | None]
    replace: bool


class Informer(Generic[T]):
    """Keeps `store` (loop side) equal to the server's objects of one resource,
    converted by `convert` (run in the worker thread; None drops an object)."""

    BACKOFF_START = 0.2
    BACKOFF_MAX = 10.0
    # Not-served resources (CRDs not installed yet) are looked for again this often.
    ABSENT_RETRY = 5.0

    def __init__(
        self,
        client: KubeClient,
        resource: Resource,
        convert: Callable[[JsonObj], T | None],
        on_batch: Callable[[Informer[T], Batch[T]], None],
        *,
        namespace: str | None = None,
        field_selector: str = "",
        watch_timeout: int = 300,
        page_size: int = 500,
    ) -> None:
        self.client = client
        self.resource = resource
        self.convert = convert
        self.on_batch = on_batch
        self.namespace = namespace
        self.field_selector = field_selector
        self.watch_timeout = watch_timeout
        self.page_size = page_size
        self.store: dict[Key, T] = {}  # loop side
        self.synced = asyncio.Event()  # set (on the loop) after the first list
        self.version = ""  # the served API version in use
        self.relists = 0
        self.watch_restarts = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._open: list[Any] = []  # the open watch response, closed by stop()
        self._thread: threading.Thread | None = None
        # Thread side: resourceVersion and converted object per key.
        self._rv: dict[Key, str] = {}
        self._objs: dict[Key, T] = {}
        self._listed = False

    @property
    def name(self) -> str:
        ns = f" in {self.namespace}" if self.namespace else ""
        return f"{self.resource.kind}{ns}"

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name=f"kube-{self.resource.plural}", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        for raw in list(self._open):
            with contextlib.suppress(Exception):
                raw.shutdown()  # unblocks a read in progress (urllib3 >= 2.3)
            with contextlib.suppress(Exception):
                raw.close()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5.0)

    # ---------------------------------------------------------------- loop side

    def _deliver(self, batch: Batch[T], synced: bool) -> None:
        if self._loop is None or self._stop.is_set():
            return

        def apply() -> None:
            if batch.replace:
                self.store = {k: v for k, v in batch.changes.items() if v is not None}
            else:
                for k, v in batch.changes.items():
                    if v is None:
                        self.store.pop(k, None)
                    else:
                        self.store[k] = v
            if synced:
                self.synced.set()
            self.on_batch(self, batch)

        with contextlib.suppress(RuntimeError):  # loop closed: shutting down
            self._loop.call_soon_threadsafe(apply)

    # ---------------------------------------------------------------- thread side

    def _run(self) -> None:
        backoff = self.BACKOFF_START
        rv = ""
        while not self._stop.is_set():
            try:
                if not rv:
                    rv = self._list()
                    backoff = self.BACKOFF_START
                    if not rv:  # not served (yet)
                        self._stop.wait(self.ABSENT_RETRY)
                        continue
                rv = self._watch(rv)
            except KubeApiError as e:
                if self._stop.is_set():
                    break
                if e.status == 410:  # our resourceVersion is compacted away: list again
                    log.info("%s: watch expired (410 Gone); listing again", self.name)
                    rv = ""
                    continue
                log.warning("%s: %s; retrying in %.1fs", self.name, e, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.BACKOFF_MAX)
            except Exception as e:
                if self._stop.is_set():
                    break
                log.warning("%s: watch failed (%s: %s); retrying in %.1fs", self.name, type(e).__name__, e, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.BACKOFF_MAX)

    def _query(self) -> list[tuple[str, str]]:
        return [("fieldSelector", self.field_selector)] if self.field_selector else []

    def _list(self) -> str:
        """Lists every object (paged) and replaces the store. Returns the list's
        resourceVersion, or "" when no version of the resource is served."""
        last_404: KubeApiError | None = None
        for version in self.resource.versions:
            try:
                items, rv = self._list_version(version)
            except KubeApiError as e:
                if e.status == 404:
                    last_404 = e
                    continue
                raise
            self.version = version
            break
        else:
            # Not served (no CRD yet): an empty store, delivered only when that is news,
            # so polling for the CRD does not rebuild the mesh every few seconds.
            news = not self._listed or bool(self._objs)
            if news:
                log.debug("%s: not served (%s)", self.name, last_404)
                self._deliver(Batch({}, replace=True), synced=True)
            self.version = ""
            self._rv, self._objs = {}, {}
            self._listed = True
            return ""
        rvs: dict[Key, str] = {}
        objs: dict[Key, T] = {}
        for item in items:
            key = object_key(item)
            irv = resource_version(item)
            rvs[key] = irv
            old = self._objs.get(key)
            if old is not None and self._rv.get(key) == irv:
                objs[key] = old  # unchanged: keep the very same converted object
                continue
            conv = self._convert(item)
            if conv is not None:
                objs[key] = conv
        self._rv, self._objs = rvs, objs
        self._listed = True
        self.relists += 1
        self._deliver(Batch(dict(objs), replace=True), synced=True)
        return rv

    def _list_version(self, version: str) -> tuple[list[JsonObj], str]:
        path = self.resource.path(version, self.namespace)
        items: list[JsonObj] = []
        cont = ""
        while True:
            query = [*self._query(), ("limit", str(self.page_size))]
            if cont:
                query.append(("continue", cont))
            page = self.client.request("GET", path, query, timeout=(10.0, 60.0))
            items += page.get("items") or []
            meta = page.get("metadata") or {}
            cont = str(meta.get("continue") or "")
            if not cont:
                return items, str(meta.get("resourceVersion") or "")

    def _watch(self, rv: str) -> str:
        """Watches from `rv` until the stream ends; returns the last version seen."""
        query = [
            *self._query(),
            ("watch", "true"),
            ("resourceVersion", rv),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(self.watch_timeout)),
        ]
        path = self.resource.path(self.version, self.namespace)
        self.watch_restarts += 1
        for event in self.client.stream(path, query, self.watch_timeout + 30.0, self._open):
            if self._stop.is_set():
                break
            etype = event.get("type")
            obj = event.get("object") or {}
            if etype == "ERROR":
                code = int(obj.get("code") or 0)
                raise KubeApiError(code, str(obj.get("message") or obj), str(obj.get("reason") or ""))
            new_rv = resource_version(obj)
            if etype == "BOOKMARK":
                rv = new_rv or rv
                continue
            key = object_key(obj)
            if etype == "DELETED":
                self._rv.pop(key, None)
                gone = self._objs.pop(key, None)
                if gone is not None:
                    self._deliver(Batch({key: None}, replace=False), synced=False)
            elif etype in ("ADDED", "MODIFIED"):
                if self._rv.get(key) == new_rv:
                    rv = new_rv or rv
                    continue  # a duplicate
                self._rv[key] = new_rv
                conv = self._convert(obj)
                if conv is None:
                    if self._objs.pop(key, None) is not None:
                        self._deliver(Batch({key: None}, replace=False), synced=False)
                else:
                    self._objs[key] = conv
                    self._deliver(Batch({key: conv}, replace=False), synced=False)
            rv = new_rv or rv
        return rv

    def _convert(self, obj: JsonObj) -> T | None:
        try:
            return self.convert(obj)
        except Exception:
            ns, name = object_key(obj)
            log.exception("%s %s/%s: cannot convert; ignored", self.resource.kind, ns, name)
            return None
