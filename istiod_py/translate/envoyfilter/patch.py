"""EnvoyFilter: configPatches applied to the translated xDS, as istiod does.

Selection (per proxy): EnvoyFilters in the mesh root namespace apply to every
proxy, others only to proxies in their namespace; `workloadSelector` narrows by
labels; `targetRefs` is not supported here and such a filter is rejected with an
error. Order: root namespace first, then the proxy's namespace, each by
namespace/name (istiod: creation time), stably re-sorted by `priority`.

Application is a post-processing step over the `Resources` the translator
built (`apply`). Each shared `Part` is patched once per distinct set of
applicable patches (memoized in the PushContext), so proxies with the same
EnvoyFilters share the patched `Built` objects and resources no patch touches
stay the very objects the translator made.

Patch values are converted to the Envoy proto for their `applyTo` with
`json_format`; `typed_config` given as a (udpa/xds) `TypedStruct` is turned into
the real type, since Envoy only accepts TypedStruct for some extensions. Every
patch result is checked (the protoc-gen-validate rules carried in Envoy's
descriptors, plus a few Envoy load-time rules); a patch that cannot be applied
or would produce config Envoy rejects is skipped and reported in the
PushContext's `errors` (shown by /debug/configz) and the log.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf.message import Message

from istiod_py.cache.resources import Built, Part, Resources, build
from istiod_py.model import Proxy

from ..context import PushContext
from .compile import applicable, report
from .model import ADDABLE, APPLIES_TO_TYPE, OP, REMOVED, CompiledPatch, PatchError, Removed
from .targets import patch_cluster, patch_listener, patch_route_config, route_context
from .validate import validate

# --- entry point --------------------------------------------------------------------


def apply(ctx: PushContext, proxy: Proxy, type_url: str, res: Resources) -> Resources:
    """`res` with the proxy's EnvoyFilter patches applied (or `res` itself)."""
    kinds = APPLIES_TO_TYPE.get(type_url)
    if kinds is None:
        return res
    patches = tuple(p for p in applicable(ctx, proxy) if p.apply_to in kinds)
    if not patches:
        return res
    pkey = tuple(p.key for p in patches)
    rkey = ("ef-res", type_url, tuple(id(p) for p in res.parts), pkey, proxy.type)
    hit = ctx.memo.get(rkey)
    if hit is not None and hit[0] == res.parts:
        return hit[1]  # type: ignore[no-any-return]
    parts = [patch_part(ctx, proxy, type_url, p, patches, pkey) for p in res.parts]
    added = _added_part(ctx, proxy, type_url, patches, pkey, res)
    if all(a is b for a, b in zip(parts, res.parts, strict=True)) and not len(added):
        out = res
    else:
        out = Resources(tuple(p for p in (*parts, added) if len(p)))
    ctx.memo[rkey] = (res.parts, out)
    return out


def patch_part(
    ctx: PushContext,
    proxy: Proxy,
    type_url: str,
    part: Part,
    patches: tuple[CompiledPatch, ...],
    pkey: tuple[tuple[str, int], ...],
) -> Part:
    key = ("ef-part", type_url, id(part), pkey, proxy.type)
    hit = ctx.memo.get(key)
    if hit is not None and hit[0] is part:
        return hit[1]  # type: ignore[no-any-return]
    items: dict[str, Built] = {}
    origins: dict[str, frozenset[str]] = dict(part.origins)  # sub-resource records too
    changed = False
    for built in part.items.values():
        applied: list[str] = []
        patched = _patch_resource(ctx, proxy, type_url, built, patches, applied)
        if patched is not built:
            changed = True
        if patched is not None:
            items[patched.name] = patched
            # Provenance: the patches that changed it, with their field path.
            origins[patched.name] = part.origins_of(built.name) | frozenset(applied)
    out = Part(items, origins) if changed else part
    ctx.memo[key] = (part, out)
    return out


def _patch_resource(
    ctx: PushContext,
    proxy: Proxy,
    type_url: str,
    built: Built,
    patches: tuple[CompiledPatch, ...],
    applied: list[str] | None = None,
) -> Built | None:
    msg = built.message()
    before: list[str] | None = None
    for p in patches:
        trial = type(msg)()
        trial.CopyFrom(msg)
        try:
            result = _apply_one(ctx, proxy, type_url, trial, p)
        except PatchError as e:
            report(ctx, f"{p.where} on {built.name}: {e} (patch skipped)")
            continue
        if result is REMOVED:
            return None
        if not result:
            continue
        problems = validate(trial)
        if problems:
            if before is None:
                before = validate(msg)
            new = [x for x in problems if x not in before]
            if new:
                report(ctx, f"{p.where} on {built.name}: result rejected: {'; '.join(new[:5])} (patch skipped)")
                continue
        msg = trial
        if applied is not None:
            applied.append(patch_ref(p))
    body = msg.SerializeToString(deterministic=True)
    if body == built.body:
        return built
    return build(getattr(msg, "name", built.name) or built.name, type_url, msg)


def _added_part(
    ctx: PushContext,
    proxy: Proxy,
    type_url: str,
    patches: tuple[CompiledPatch, ...],
    pkey: tuple[tuple[str, int], ...],
    res: Resources,
) -> Part:
    apply_to = ADDABLE.get(type_url)
    adds = [p for p in patches if p.apply_to == apply_to and p.operation == OP.ADD]
    if not adds:
        return Part({})
    out: dict[str, Built] = {}
    origins: dict[str, frozenset[str]] = {}
    for p in adds:
        assert p.value is not None
        name = getattr(p.value, "name", "")
        if name in res or name in out:
            report(ctx, f"{p.where}: {name!r} already exists (patch skipped)")
            continue
        problems = validate(p.value)
        if problems:
            report(ctx, f"{p.where}: added {name!r} is not valid: {'; '.join(problems[:5])} (patch skipped)")
            continue
        out[name] = build(name, type_url, p.value)
        origins[name] = frozenset({patch_ref(p)})
    return Part(out, origins)


def patch_ref(p: CompiledPatch) -> str:
    """Provenance of a patch: `EnvoyFilter/ns/name:configPatches[i]`."""
    ns_name, index = p.key
    return f"EnvoyFilter/{ns_name}:configPatches[{index}]"


def _apply_one(ctx: PushContext, proxy: Proxy, type_url: str, msg: Message, p: CompiledPatch) -> bool | Removed:
    if isinstance(msg, cluster_pb2.Cluster):
        return patch_cluster(proxy, msg, p)
    if isinstance(msg, route_pb2.RouteConfiguration):
        return patch_route_config(ctx, proxy, msg, p, route_context(proxy, msg.name))
    if isinstance(msg, listener_pb2.Listener):
        return patch_listener(ctx, proxy, msg, p)
    return False
