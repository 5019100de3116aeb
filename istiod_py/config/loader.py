"""Load Istio config and Kubernetes Services/EndpointSlices from YAML, strictly.

A bad document never stops the others: every problem becomes a ConfigError that
names the file, document, resource and field, and the good documents still load.
Nothing here raises for bad input: YAML is parsed within the bounds of
yaml_bounds.py (size, aliases, depth), values are range-checked against their
proto fields (proto_yaml.py), and `_load_document` is total — any exception left
becomes a ConfigError for that document rather than escaping into the watcher
or `serve` start-up.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from istiod_py.config import gatewayapi
from istiod_py.config.kube_types import (
    EndpointSlice,
    KubeParseError,
    KubeService,
    parse_endpoint_slice,
    parse_object_meta,
    parse_service,
)
from istiod_py.config.model import DEFAULT_NAMESPACE, KINDS, Config, ConfigError, ConfigMeta, KindInfo, clip, quote
from istiod_py.config.proto_yaml import parse_message
from istiod_py.config.scan import scan_directory
from istiod_py.config.validation import validate_config
from istiod_py.config.yaml_bounds import MAX_FILE_BYTES, BoundsError, load_bounded

log = logging.getLogger("istiod_py.config")
_DOC_START = re.compile(r"^---(?:[ \t].*)?$")
_TOP_LEVEL_FIELDS = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})
# Workload kinds that commonly share files with mesh config (e.g. bookinfo.yaml); the
# control plane does not read them from files, so they are skipped without error.
IGNORED_KINDS = frozenset(
    {
        "Deployment",
        "ServiceAccount",
        "Namespace",
        "ConfigMap",
        "Secret",
        "Pod",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "Job",
        "CronJob",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
)


@dataclass
class LoadResult:
    configs: list[Config] = field(default_factory=list)
    services: list[KubeService] = field(default_factory=list)
    endpoint_slices: list[EndpointSlice] = field(default_factory=list)
    errors: list[ConfigError] = field(default_factory=list)

    def extend(self, other: LoadResult) -> None:
        self.configs.extend(other.configs)
        self.services.extend(other.services)
        self.endpoint_slices.extend(other.endpoint_slices)
        self.errors.extend(other.errors)


@dataclass(frozen=True)
class _Doc:
    """One YAML document (or one item of a `kind: List`) and where it came from."""

    source: str
    index: int
    line: int
    body: dict[str, Any]
    prefix: str = ""

    def error(self, message: str, path: str = "", kind: str = "", namespace: str = "", name: str = "") -> ConfigError:
        full = ".".join(p for p in (self.prefix, path) if p)
        return ConfigError(self.source, self.index, message, kind, namespace, name, full, self.line)


def _split_documents(text: str) -> Iterator[tuple[int, str]]:
    """Yields (first line number, text) per document, so one syntax error spoils only its own."""
    start, lines = 1, list[str]()
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        if _DOC_START.match(line.rstrip("\r\n")):
            yield start, "".join(lines)
            start, lines = number, [line]
        else:
            lines.append(line)
    yield start, "".join(lines)


# Parsed documents of one file by (index, first line, text): re-reading a file
# whose edit touched one document re-parses only that document, and hands back
# the very same objects for the rest (which the registry's conversion cache reuses).
DocMemo = dict[tuple[int, int, str], LoadResult]


def load_bytes(data: bytes, source: str, memo: DocMemo | None = None, new_memo: DocMemo | None = None) -> LoadResult:
    """A file's bytes: refused whole if over MAX_FILE_BYTES or not UTF-8 (the line of
    the first bad byte named), else `load_text`."""
    if len(data) > MAX_FILE_BYTES:
        return LoadResult(errors=[_too_large(source, len(data))])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        message = f"not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}; save the file as UTF-8"
        return LoadResult(errors=[ConfigError(source, 0, message, line=line)])
    return load_text(text, source, memo, new_memo)


def _too_large(source: str, size: int) -> ConfigError:
    return ConfigError(
        source,
        0,
        f"file is {size} bytes, over the {MAX_FILE_BYTES}-byte limit for a config file; split it into several files",
    )


def load_text(text: str, source: str, memo: DocMemo | None = None, new_memo: DocMemo | None = None) -> LoadResult:
    result = LoadResult()
    if len(text) > MAX_FILE_BYTES:
        result.errors.append(_too_large(source, len(text)))
        return result
    for index, (line, chunk) in enumerate(_split_documents(text)):
        key = (index, line, chunk)
        one = memo.get(key) if memo is not None else None
        if one is None:
            one = _load_document(chunk, source, index, line)
        if new_memo is not None:
            new_memo[key] = one
        result.extend(one)
    return result


def _load_document(chunk: str, source: str, index: int, line: int) -> LoadResult:
    """Total: whatever goes wrong in this document is reported for it, never raised.
    The resources it defined before keep serving (store.retain_last_good)."""
    try:
        return _parse_document(chunk, source, index, line)
    except Exception as exc:  # the boundary: nothing escapes a document (RecursionError, MemoryError too)
        return LoadResult(errors=[_unexpected(exc, chunk, source, index, line)])


def _unexpected(exc: BaseException, chunk: str, source: str, index: int, line: int) -> ConfigError:
    """A ConfigError for an exception the checks did not anticipate, naming the
    resource if the document's header can still be read."""
    log.warning("%s document %d: unexpected %s while loading", source, index, type(exc).__name__, exc_info=exc)
    kind = name = namespace = ""
    try:
        body = load_bounded(chunk)
        if isinstance(body, dict):
            kind = _text(body.get("kind"))
            meta = body.get("metadata")
            if isinstance(meta, dict):
                name = _text(meta.get("name"))
                namespace = _text(meta.get("namespace")) or DEFAULT_NAMESPACE
    except Exception:  # the header is unreadable too: file and document still locate it
        pass
    detail = clip(str(exc), 120) or type(exc).__name__
    message = f"cannot load this document ({type(exc).__name__}: {detail}); check its values"
    return ConfigError(source, index, message, kind, namespace, name, line=line)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _parse_document(chunk: str, source: str, index: int, line: int) -> LoadResult:
    result = LoadResult()
    try:
        body = load_bounded(chunk)
    except yaml.YAMLError as exc:
        result.errors.append(_syntax_error(exc, source, index, line))
        return result
    if body is None:
        return result
    if not isinstance(body, dict):
        result.errors.append(
            ConfigError(
                source,
                index,
                f"expected a Kubernetes object (a mapping), got {type(body).__name__}",
                line=line,
            )
        )
        return result
    _load_object(_Doc(source, index, line, body), result)
    return result


def _syntax_error(exc: yaml.YAMLError, source: str, index: int, first_line: int) -> ConfigError:
    if isinstance(exc, BoundsError):
        at = first_line + exc.line if exc.line is not None else first_line
        return ConfigError(source, index, f"document refused: {exc.problem}", line=at)
    mark = getattr(exc, "problem_mark", None)
    line = first_line + mark.line if mark is not None else first_line
    problem = getattr(exc, "problem", None) or str(exc)
    return ConfigError(
        source, index, f"YAML syntax error: {clip(str(problem), 200)}; fix the YAML at this line", line=line
    )


def _load_object(doc: _Doc, result: LoadResult) -> None:
    kind = doc.body.get("kind")
    api_version = doc.body.get("apiVersion")
    if not isinstance(kind, str) or not kind:
        result.errors.append(doc.error("'kind' is required (e.g. VirtualService)", "kind"))
    elif not isinstance(api_version, str) or not api_version:
        result.errors.append(doc.error("'apiVersion' is required", "apiVersion", kind))
    elif kind == "List":
        _load_list(doc, result)
    elif gatewayapi.is_gateway_api(api_version):
        _load_gateway_api(doc, api_version, result)
    elif kind in KINDS:
        _load_istio(doc, KINDS[kind], api_version, result)
    elif kind == "Service" and api_version == "v1":
        _load_kube(doc, result, kind, parse_service)
    elif kind == "EndpointSlice" and api_version == "discovery.k8s.io/v1":
        _load_kube(doc, result, kind, parse_endpoint_slice)
    elif kind not in IGNORED_KINDS:
        supported = ", ".join(
            [
                *sorted(KINDS),
                "Service (v1)",
                "EndpointSlice (discovery.k8s.io/v1)",
                f"{', '.join(sorted(gatewayapi.KINDS))} ({gatewayapi.GROUP})",
            ]
        )
        result.errors.append(
            doc.error(
                f"unknown kind {quote(kind)} (apiVersion {quote(api_version)}): supported kinds are {supported}",
                "kind",
                kind,
            )
        )


def _load_list(doc: _Doc, result: LoadResult) -> None:
    items = doc.body.get("items")
    if not isinstance(items, list):
        result.errors.append(doc.error("a List needs 'items', a list of objects", "items", "List"))
        return
    for i, item in enumerate(items):
        prefix = f"items[{i}]"
        if isinstance(item, dict):
            _load_object(_Doc(doc.source, doc.index, doc.line, item, prefix), result)
        else:
            result.errors.append(doc.error("expected a Kubernetes object (a mapping)", prefix, "List"))


def _load_gateway_api(doc: _Doc, api_version: str, result: LoadResult) -> None:
    config, errors = gatewayapi.load(doc.body, api_version, doc.source, doc.index, doc.error)
    result.errors.extend(errors)
    if config is not None:
        result.configs.append(config)


def _load_kube(doc: _Doc, result: LoadResult, kind: str, parse: Any) -> None:
    meta = doc.body.get("metadata")
    name = _text(meta.get("name")) if isinstance(meta, dict) else ""
    namespace = (_text(meta.get("namespace")) if isinstance(meta, dict) else "") or DEFAULT_NAMESPACE
    try:
        obj = parse(doc.body, DEFAULT_NAMESPACE)
    except KubeParseError as exc:
        result.errors.append(doc.error(exc.message, exc.path, kind, namespace, name))
        return
    if kind == "Service":
        result.services.append(obj)
    else:
        result.endpoint_slices.append(obj)


def _load_istio(doc: _Doc, info: KindInfo, api_version: str, result: LoadResult) -> None:
    body = doc.body
    if not info.accepts(api_version):
        accepted = ", ".join(f"{info.group}/{v}" for v in info.versions)
        result.errors.append(
            doc.error(
                f"apiVersion {quote(api_version)} is not served for {info.kind}: use one of {accepted}",
                "apiVersion",
                info.kind,
            )
        )
        return
    try:
        meta = parse_object_meta(body.get("metadata"), DEFAULT_NAMESPACE)
    except KubeParseError as exc:
        result.errors.append(doc.error(exc.message, exc.path, info.kind))
        return
    errors_before = len(result.errors)
    for key in body:
        if key not in _TOP_LEVEL_FIELDS:
            result.errors.append(
                doc.error(
                    f"unknown top-level field {quote(key)}: did you mean to put it under 'spec'?",
                    str(key),
                    info.kind,
                    meta.namespace,
                    meta.name,
                )
            )
    spec = info.message()
    for problem in parse_message(body.get("spec") or {}, spec, "spec"):
        result.errors.append(doc.error(problem.message, problem.path, info.kind, meta.namespace, meta.name))
    if len(result.errors) > errors_before:
        return
    config = Config(
        ConfigMeta(
            info.kind,
            api_version,
            meta.name,
            meta.namespace,
            meta.labels,
            meta.annotations,
            doc.source,
            doc.index,
        ),
        spec,
    )
    invalid = validate_config(config)
    if invalid:
        result.errors.extend(
            ConfigError(
                e.source,
                e.doc_index,
                e.message,
                e.kind,
                e.namespace,
                e.name,
                ".".join(p for p in (doc.prefix, e.field) if p),
                doc.line,
            )
            for e in invalid
        )
        return
    result.configs.append(config)


class NotRegularFile(OSError):
    """A FIFO, socket or device named *.yaml: skipped, never read (a read could block)."""


def read_file(path: str | Path) -> bytes:
    """A config file's bytes without ever blocking: opened non-blocking and checked
    to be a regular file before reading (a FIFO named x.yaml would block a plain
    open until a writer came); at most MAX_FILE_BYTES + 1 bytes are read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(f"not a regular file (mode {stat.filemode(st.st_mode)}); skipped")
        chunks: list[bytes] = []
        remaining = MAX_FILE_BYTES + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def load_file(path: str | Path, memo: DocMemo | None = None, new_memo: DocMemo | None = None) -> LoadResult:
    """One file; an unreadable or special file is one ConfigError naming it."""
    source = str(path)
    try:
        data = read_file(path)
    except OSError as exc:
        reason = str(exc) if isinstance(exc, NotRegularFile) else f"cannot read file: {exc.strerror or exc}"
        return LoadResult(errors=[ConfigError(source, 0, reason)])
    return load_bytes(data, source, memo, new_memo)


def load_directory(path: str | Path) -> LoadResult:
    """Every *.yaml / *.yml file under `path`, recursively, in sorted order."""
    root = Path(path)
    result = LoadResult()
    if not root.is_dir():
        result.errors.append(ConfigError(str(root), 0, "config directory does not exist or is not a directory"))
        return result
    for file, _, _ in scan_directory(root).files:
        result.extend(load_file(file))
    return result
