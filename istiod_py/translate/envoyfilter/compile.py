"""Compiling every EnvoyFilter once per state (errors reported once), and
selecting the patches that apply to a proxy, in application order."""

from __future__ import annotations

import logging
import re
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from istiod_py.config.model import Config
from istiod_py.model import Proxy, ProxyType, labels_match

from ..context import PushContext
from .model import ALLOWED_OPS, OP, PC, ROUTE_LEVEL, VALUE_TYPES, A, CompiledFilter, CompiledPatch, PatchError
from .validate import validate
from .values import to_proto

log = logging.getLogger(__name__)


# --- errors -----------------------------------------------------------------------


def report(ctx: PushContext, msg: str) -> None:
    """Record a translation-time error once per state (log + /debug/configz)."""
    seen: set[str] = ctx.cached(("ef-errors-seen",), set)
    if msg not in seen:
        seen.add(msg)
        ctx.errors.append(msg)
        log.warning("%s", msg)


def translation_errors(ctx: PushContext) -> list[str]:
    """Errors for the state: every EnvoyFilter is compiled (so bad values show
    even before a proxy connects), plus what applying patches has found."""
    compiled(ctx)
    return list(ctx.errors)


# --- compile ------------------------------------------------------------------------


def compiled(ctx: PushContext) -> tuple[CompiledFilter, ...]:
    return ctx.cached(("ef-compiled",), lambda: _compile_all(ctx))


def _compile_all(ctx: PushContext) -> tuple[CompiledFilter, ...]:
    out = []
    for cfg in sorted(ctx.state.of_kind("EnvoyFilter"), key=lambda c: (c.meta.namespace, c.meta.name)):
        cf = _compile_filter(ctx, cfg)
        if cf is not None:
            out.append(cf)
    return tuple(out)


def _compile_filter(ctx: PushContext, cfg: Config) -> CompiledFilter | None:
    spec: Any = cfg.spec
    key = f"{cfg.meta.namespace}/{cfg.meta.name}"
    if len(spec.targetRefs):
        report(ctx, f"EnvoyFilter {key}: spec.targetRefs is not supported; use workloadSelector (filter ignored)")
        return None
    selector = None
    if spec.HasField("workload_selector"):
        selector = tuple(sorted(spec.workload_selector.labels.items()))
    patches = []
    for i, p in enumerate(spec.config_patches):
        try:
            patches.append(_compile_patch(key, i, p))
        except PatchError as e:
            report(ctx, f"EnvoyFilter {key} configPatches[{i}]: {e} (patch skipped)")
    return CompiledFilter(key, cfg.meta.namespace, int(spec.priority), selector, tuple(patches))


def _compile_patch(key: str, index: int, p: Any) -> CompiledPatch:
    apply_to = int(p.apply_to)
    op = int(p.patch.operation)
    if apply_to not in VALUE_TYPES:
        raise PatchError(f"applyTo {A.Name(apply_to)} is not supported")
    if op not in ALLOWED_OPS[apply_to]:
        raise PatchError(f"operation {OP.Name(op)} is not valid for applyTo {A.Name(apply_to)}")
    value: Message | None = None
    if op != OP.REMOVE:
        if not p.patch.HasField("value"):
            raise PatchError(f"patch.value is required for {OP.Name(op)}")
        value = to_proto(json_format.MessageToDict(p.patch.value), VALUE_TYPES[apply_to])
        problems = validate(value)
        if op in (OP.ADD, OP.INSERT_BEFORE, OP.INSERT_AFTER, OP.INSERT_FIRST, OP.REPLACE) and problems:
            raise PatchError("patch.value is not valid Envoy config: " + "; ".join(problems[:5]))
    version = None
    metadata: tuple[tuple[str, str], ...] = ()
    if p.HasField("match"):
        m = p.match
        if m.HasField("proxy"):
            if m.proxy.proxy_version:
                try:
                    version = re.compile(m.proxy.proxy_version)
                except re.error as e:
                    raise PatchError(f"match.proxy.proxyVersion {m.proxy.proxy_version!r}: {e}") from None
            metadata = tuple(sorted(m.proxy.metadata.items()))
        kind = m.WhichOneof("object_types")
        want = "cluster" if apply_to == A.CLUSTER else "route_configuration" if apply_to in ROUTE_LEVEL else "listener"
        if kind is not None and kind != want:
            raise PatchError(f"match.{kind} cannot select objects for applyTo {A.Name(apply_to)} (use match.{want})")
    return CompiledPatch((key, index), apply_to, int(p.match.context), p.match, op, value, version, metadata)


# --- selection ----------------------------------------------------------------------


def _proxy_version(proxy: Proxy) -> str:
    return str(proxy.metadata.get("ISTIO_VERSION") or "")


def applicable(ctx: PushContext, proxy: Proxy) -> tuple[CompiledPatch, ...]:
    """The patches that apply to a proxy, in application order."""
    filters = compiled(ctx)
    if not filters:
        return ()
    meta_keys = sorted({k for f in filters for p in f.patches for k, _ in p.metadata})
    meta = tuple(str(proxy.metadata.get(k, "")) for k in meta_keys)
    key = ("ef-for", proxy.namespace, proxy.labels_key, proxy.type, _proxy_version(proxy), meta)

    def select() -> tuple[CompiledPatch, ...]:
        root = ctx.state.mesh.root_namespace
        chosen = [f for f in filters if f.namespace == root] + [
            f for f in filters if f.namespace == proxy.namespace and f.namespace != root
        ]
        chosen = [f for f in chosen if f.selector is None or labels_match(dict(f.selector), proxy.labels)]
        chosen.sort(key=lambda f: f.priority)  # stable: root first, then by name
        version = _proxy_version(proxy)
        out = []
        for f in chosen:
            for p in f.patches:
                if not _context_for_proxy(p.context, proxy):
                    continue
                if p.version is not None and version and not p.version.match(version):
                    continue
                if any(str(proxy.metadata.get(k, "")) != v for k, v in p.metadata):
                    continue
                out.append(p)
        return tuple(out)

    return ctx.cached(key, select)


def _context_for_proxy(context: int, proxy: Proxy) -> bool:
    if context == PC.ANY:
        return True
    return (context == PC.GATEWAY) == (proxy.type == ProxyType.ROUTER)
