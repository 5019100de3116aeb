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

import importlib
import logging
import pkgutil
import re
from collections.abc import Callable, Iterable, MutableSequence
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import any_pb2, descriptor, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError, Message
from istio.networking.v1alpha3 import envoy_filter_pb2

from istiod_py.cache.resources import Built, Part, Resources, build
from istiod_py.config.model import Config
from istiod_py.model import Proxy, ProxyType, labels_match
from istiod_py.xds.types import TypeUrl

from ..context import PushContext
from ..gateway.servers import port_map
from ..scope import host_matches

log = logging.getLogger(__name__)

EF = envoy_filter_pb2.EnvoyFilter
A = EF.ApplyTo
OP = EF.Patch.Operation
PC = EF.PatchContext
RA = EF.RouteConfigurationMatch.RouteMatch.Action

HCM = "envoy.filters.network.http_connection_manager"
ROUTER = "envoy.filters.http.router"
TERMINAL_NETWORK_FILTERS = frozenset({HCM, "envoy.filters.network.tcp_proxy"})
TYPED_STRUCT_TYPES = frozenset(
    {"type.googleapis.com/udpa.type.v1.TypedStruct", "type.googleapis.com/xds.type.v3.TypedStruct"}
)

VALUE_TYPES: dict[int, type[Message]] = {
    A.LISTENER: listener_pb2.Listener,
    A.FILTER_CHAIN: lc.FilterChain,
    A.NETWORK_FILTER: lc.Filter,
    A.HTTP_FILTER: hcm_pb2.HttpFilter,
    A.LISTENER_FILTER: lc.ListenerFilter,
    A.ROUTE_CONFIGURATION: route_pb2.RouteConfiguration,
    A.VIRTUAL_HOST: rc.VirtualHost,
    A.HTTP_ROUTE: rc.Route,
    A.CLUSTER: cluster_pb2.Cluster,
}

_LIST_OPS = frozenset({OP.MERGE, OP.ADD, OP.REMOVE, OP.INSERT_BEFORE, OP.INSERT_AFTER, OP.INSERT_FIRST, OP.REPLACE})
ALLOWED_OPS: dict[int, frozenset[int]] = {
    A.LISTENER: frozenset({OP.MERGE, OP.ADD, OP.REMOVE}),
    A.FILTER_CHAIN: frozenset({OP.MERGE, OP.ADD, OP.REMOVE}),
    A.NETWORK_FILTER: _LIST_OPS,
    A.HTTP_FILTER: _LIST_OPS,
    A.LISTENER_FILTER: _LIST_OPS,
    A.ROUTE_CONFIGURATION: frozenset({OP.MERGE}),
    A.VIRTUAL_HOST: frozenset({OP.MERGE, OP.ADD, OP.REMOVE}),
    A.HTTP_ROUTE: _LIST_OPS - {OP.REPLACE},
    A.CLUSTER: frozenset({OP.MERGE, OP.ADD, OP.REMOVE, OP.REPLACE}),
}

LISTENER_LEVEL = frozenset({A.LISTENER, A.FILTER_CHAIN, A.NETWORK_FILTER, A.HTTP_FILTER, A.LISTENER_FILTER})
ROUTE_LEVEL = frozenset({A.ROUTE_CONFIGURATION, A.VIRTUAL_HOST, A.HTTP_ROUTE})
APPLIES_TO_TYPE: dict[str, frozenset[int]] = {
    TypeUrl.LISTENER: LISTENER_LEVEL | ROUTE_LEVEL,  # route patches also reach inline (inbound) route configs
    TypeUrl.ROUTE: ROUTE_LEVEL,
    TypeUrl.CLUSTER: frozenset({A.CLUSTER}),
}
ADDABLE = {TypeUrl.LISTENER: A.LISTENER, TypeUrl.CLUSTER: A.CLUSTER}

M = TypeVar("M", bound=Message)


class PatchError(ValueError):
    """A patch that cannot be compiled or applied; the message says why."""


@dataclass(frozen=True, slots=True)
class CompiledPatch:
    key: tuple[str, int]  # ("ns/name", index in configPatches)
    apply_to: int
    context: int
    match: Any  # EnvoyFilter.EnvoyConfigObjectMatch
    operation: int
    value: Message | None
    version: re.Pattern[str] | None
    metadata: tuple[tuple[str, str], ...]

    @property
    def where(self) -> str:
        ns_name, index = self.key
        return f"EnvoyFilter {ns_name} configPatches[{index}] ({A.Name(self.apply_to)} {OP.Name(self.operation)})"


@dataclass(frozen=True, slots=True)
class CompiledFilter:
    key: str  # "ns/name"
    namespace: str
    priority: int
    selector: tuple[tuple[str, str], ...] | None
    patches: tuple[CompiledPatch, ...]


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


# --- values: Struct -> Envoy proto ---------------------------------------------------


@cache
def _import_package(package: str) -> None:
    """Import every *_pb2 module of a proto package, so its types join the pool."""
    try:
        mod = importlib.import_module(package)
    except ImportError:
        return
    for info in pkgutil.iter_modules(getattr(mod, "__path__", [])):
        if info.name.endswith("_pb2"):
            try:
                importlib.import_module(f"{package}.{info.name}")
            except ImportError:
                continue


def message_class(type_url: str) -> type[Message] | None:
    name = type_url.rsplit("/", 1)[-1]
    pool = descriptor_pool.Default()
    try:
        desc = pool.FindMessageTypeByName(name)
    except KeyError:
        _import_package(name.rsplit(".", 1)[0])
        try:
            desc = pool.FindMessageTypeByName(name)
        except KeyError:
            return None
    return message_factory.GetMessageClass(desc)


def _untyped_struct(value: Any) -> Any:
    """Replace TypedStruct `typed_config`s by their real type, recursively; check
    every `@type` names a known message."""
    if isinstance(value, list):
        return [_untyped_struct(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _untyped_struct(v) for k, v in value.items()}
    kind = out.get("@type")
    if kind in TYPED_STRUCT_TYPES:
        inner = str(out.get("type_url") or out.get("typeUrl") or "")
        if not inner:
            raise PatchError(f"TypedStruct without type_url: {value!r}")
        body = out.get("value") or {}
        if not isinstance(body, dict):
            raise PatchError(f"TypedStruct {inner}: value must be a map")
        out = {"@type": inner if "/" in inner else f"type.googleapis.com/{inner}", **body}
        kind = out["@type"]
    if isinstance(kind, str) and message_class(kind) is None:
        raise PatchError(f"unknown type {kind!r} in typed_config")
    return out


def to_proto(value: dict[str, Any], cls: type[M]) -> M:
    try:
        return json_format.ParseDict(_untyped_struct(value), cls())
    except json_format.ParseError as e:
        raise PatchError(f"patch.value is not a valid {cls.DESCRIPTOR.full_name}: {e}") from None


# --- merge (istiod's proto merge: Any of one type merged inside) ----------------------

_ATOMIC = frozenset(
    {
        "google.protobuf.Duration",
        "google.protobuf.Timestamp",
        "google.protobuf.BoolValue",
        "google.protobuf.UInt32Value",
        "google.protobuf.UInt64Value",
        "google.protobuf.Int32Value",
        "google.protobuf.Int64Value",
        "google.protobuf.DoubleValue",
        "google.protobuf.FloatValue",
        "google.protobuf.StringValue",
        "google.protobuf.BytesValue",
    }
)


def merge(dst: Message, src: Message) -> None:
    """Proto MergeFrom, except: an Any of the same type is merged as its real
    message (so a MERGE of `typed_config` changes fields, not the whole config),
    and durations/wrappers are replaced, not merged field by field."""
    for fd, value in src.ListFields():
        if fd.is_repeated:
            target = getattr(dst, fd.name)
            if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
                vfd = fd.message_type.fields_by_name["value"]
                for k, v in value.items():
                    if vfd.message_type is not None:
                        target[k].CopyFrom(v)
                    else:
                        target[k] = v
            else:
                target.extend(value)
        elif fd.message_type is not None:
            target = getattr(dst, fd.name)
            name = fd.message_type.full_name
            if not dst.HasField(fd.name) or name in _ATOMIC:
                target.CopyFrom(value)
            elif name == "google.protobuf.Any":
                _merge_any(target, value)
            else:
                merge(target, value)
        else:
            setattr(dst, fd.name, value)


def _merge_any(dst: any_pb2.Any, src: any_pb2.Any) -> None:
    if dst.type_url != src.type_url:
        dst.CopyFrom(src)
        return
    cls = message_class(src.type_url)
    if cls is None:
        raise PatchError(f"cannot merge unknown type {src.type_url}")
    a, b = cls(), cls()
    dst.Unpack(a)
    src.Unpack(b)
    merge(a, b)
    dst.Pack(a, type_url_prefix=src.type_url.rsplit("/", 1)[0] + "/")


# --- validation (protoc-gen-validate rules + a few Envoy load-time rules) ---------


@cache
def _field_rules(fd: descriptor.FieldDescriptor) -> Any:
    from validate import validate_pb2

    opts = fd.GetOptions()
    if opts.HasExtension(validate_pb2.rules):
        return opts.Extensions[validate_pb2.rules]
    return None


@cache
def _oneof_required(od: descriptor.OneofDescriptor) -> bool:
    from validate import validate_pb2

    opts = od.GetOptions()
    return bool(opts.HasExtension(validate_pb2.required) and opts.Extensions[validate_pb2.required])


def _dur(d: Any) -> float:
    return float(d.seconds) + float(d.nanos) / 1e9


def _scalar_problems(kind: str, rules: Any, value: Any, path: str, out: list[str]) -> None:
    if kind == "string":
        r = rules.string
        if r.HasField("min_len") and len(value) < r.min_len:
            out.append(f"{path}: must be at least {r.min_len} characters")
        if r.HasField("max_len") and len(value) > r.max_len:
            out.append(f"{path}: must be at most {r.max_len} characters")
        return
    if kind in ("uint32", "uint64", "int32", "int64", "double", "float"):
        r = getattr(rules, kind)
        if r.HasField("gt") and not value > r.gt:
            out.append(f"{path}: must be > {r.gt}")
        if r.HasField("gte") and not value >= r.gte:
            out.append(f"{path}: must be >= {r.gte}")
        if r.HasField("lt") and not value < r.lt:
            out.append(f"{path}: must be < {r.lt}")
        if r.HasField("lte") and not value <= r.lte:
            out.append(f"{path}: must be <= {r.lte}")


def _problems(msg: Message, path: str, out: list[str]) -> None:
    desc = msg.DESCRIPTOR
    if desc.full_name == "google.protobuf.Any":
        type_url = msg.type_url  # type: ignore[attr-defined]
        if not type_url:
            return
        cls = message_class(type_url)
        if cls is None:
            out.append(f"{path}: unknown type {type_url}")
            return
        inner = cls()
        try:
            inner.ParseFromString(msg.value)  # type: ignore[attr-defined]
        except DecodeError:
            out.append(f"{path}: cannot decode {type_url}")
            return
        _problems(inner, path, out)
        return
    for od in desc.oneofs:
        if _oneof_required(od) and msg.WhichOneof(od.name) is None:
            out.append(f"{path}: one of {od.name} is required")
    for fd in desc.fields:
        rules = _field_rules(fd)
        here = f"{path}.{fd.name}"
        if fd.is_repeated:
            values = getattr(msg, fd.name)
            if rules is not None:
                rk = rules.WhichOneof("type")
                if rk == "repeated" and rules.repeated.min_items and len(values) < rules.repeated.min_items:
                    out.append(f"{here}: needs at least {rules.repeated.min_items} item(s)")
                if rk == "map" and rules.map.min_pairs and len(values) < rules.map.min_pairs:
                    out.append(f"{here}: needs at least {rules.map.min_pairs} entr(ies)")
            if fd.message_type is None:
                continue
            if fd.message_type.GetOptions().map_entry:
                vfd = fd.message_type.fields_by_name["value"]
                if vfd.message_type is not None:
                    for k, v in values.items():
                        _problems(v, f"{here}[{k}]", out)
            else:
                for i, v in enumerate(values):
                    _problems(v, f"{here}[{i}]", out)
            continue
        if fd.containing_oneof is not None and msg.WhichOneof(fd.containing_oneof.name) != fd.name:
            continue  # rules of an unset oneof member do not apply
        if fd.message_type is not None:
            has = msg.HasField(fd.name)
            if rules is not None and rules.HasField("message") and rules.message.required and not has:
                out.append(f"{here}: is required")
            if not has:
                continue
            sub = getattr(msg, fd.name)
            if rules is not None and rules.WhichOneof("type") == "duration":
                r, d = rules.duration, _dur(sub)
                if r.HasField("gt") and not d > _dur(r.gt):
                    out.append(f"{here}: must be > {_dur(r.gt)}s")
                if r.HasField("gte") and not d >= _dur(r.gte):
                    out.append(f"{here}: must be >= {_dur(r.gte)}s")
                if r.HasField("lte") and not d <= _dur(r.lte):
                    out.append(f"{here}: must be <= {_dur(r.lte)}s")
            elif (
                rules is not None and fd.message_type.full_name in _ATOMIC and "value" in fd.message_type.fields_by_name
            ):
                rk = rules.WhichOneof("type")
                if rk:
                    _scalar_problems(rk, rules, sub.value, here, out)
            _problems(sub, here, out)
            continue
        if rules is None:
            continue
        rk = rules.WhichOneof("type")
        value = getattr(msg, fd.name)
        enum = fd.enum_type
        if rk == "enum" and enum is not None and rules.enum.defined_only and enum.values_by_number.get(value) is None:
            out.append(f"{here}: {value} is not a defined {enum.name}")
        elif rk and not (getattr(getattr(rules, rk), "ignore_empty", False) and not value):
            _scalar_problems(rk, rules, value, here, out)


def _http_filter_problems(filters: Iterable[hcm_pb2.HttpFilter], path: str, out: list[str]) -> None:
    names = [f.name for f in filters]
    for i, f in enumerate(filters):
        if not f.HasField("typed_config") and not f.HasField("config_discovery") and not f.is_optional:
            out.append(f"{path}[{i}] ({f.name}): typed_config is required")
    if ROUTER in names and names.index(ROUTER) != len(names) - 1:
        out.append(f"{path}: the router filter must be the last HTTP filter (got {names})")


def _envoy_problems(msg: Message, out: list[str]) -> None:
    """Rules Envoy checks at load time that are not in the PGV annotations."""
    if isinstance(msg, listener_pb2.Listener):
        if not msg.filter_chains and not msg.HasField("default_filter_chain"):
            out.append(f"listener {msg.name}: has no filter chains")
        chains = list(msg.filter_chains) + ([msg.default_filter_chain] if msg.HasField("default_filter_chain") else [])
        for ci, fc in enumerate(chains):
            names = [f.name for f in fc.filters]
            for fi, f in enumerate(fc.filters):
                where = f"listener {msg.name} filter_chains[{ci}].filters[{fi}] ({f.name})"
                if not f.HasField("typed_config") and not f.HasField("config_discovery"):
                    out.append(f"{where}: typed_config is required")
                if f.name in TERMINAL_NETWORK_FILTERS and fi != len(names) - 1:
                    out.append(f"{where}: terminal filter must be the last in the chain (got {names})")
                if f.name == HCM and f.typed_config.type_url.endswith("HttpConnectionManager"):
                    m = hcm_pb2.HttpConnectionManager()
                    f.typed_config.Unpack(m)
                    _http_filter_problems(m.http_filters, f"{where}.http_filters", out)
                    if m.HasField("route_config"):
                        _envoy_problems(m.route_config, out)
    elif isinstance(msg, route_pb2.RouteConfiguration):
        seen: set[str] = set()
        for vh in msg.virtual_hosts:
            for d in vh.domains:
                if d.lower() in seen:
                    out.append(f"route config {msg.name}: domain {d!r} is in more than one virtual host")
                seen.add(d.lower())


def validate(msg: Message) -> list[str]:
    """Problems Envoy would reject `msg` for (empty: looks valid)."""
    out: list[str] = []
    _problems(msg, msg.DESCRIPTOR.name, out)
    _envoy_problems(msg, out)
    return out


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
    changed = False
    for built in part.items.values():
        patched = _patch_resource(ctx, proxy, type_url, built, patches)
        if patched is not built:
            changed = True
        if patched is not None:
            items[patched.name] = patched
    out = Part(items) if changed else part
    ctx.memo[key] = (part, out)
    return out


def _patch_resource(
    ctx: PushContext, proxy: Proxy, type_url: str, built: Built, patches: tuple[CompiledPatch, ...]
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
        if result is _REMOVED:
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
    return Part(out)


class _Removed:
    pass


_REMOVED = _Removed()


def _apply_one(ctx: PushContext, proxy: Proxy, type_url: str, msg: Message, p: CompiledPatch) -> bool | _Removed:
    if isinstance(msg, cluster_pb2.Cluster):
        return _patch_cluster(proxy, msg, p)
    if isinstance(msg, route_pb2.RouteConfiguration):
        return _patch_route_config(ctx, proxy, msg, p, _route_context(proxy, msg.name))
    if isinstance(msg, listener_pb2.Listener):
        return _patch_listener(ctx, proxy, msg, p)
    return False


# --- clusters -----------------------------------------------------------------------


def _cluster_context(proxy: Proxy, name: str) -> int:
    if proxy.type == ProxyType.ROUTER:
        return PC.GATEWAY
    return PC.SIDECAR_INBOUND if name.startswith("inbound|") else PC.SIDECAR_OUTBOUND


def _cluster_match(c: cluster_pb2.Cluster, m: Any) -> bool:
    if m.name:
        return bool(m.name == c.name)
    parts = c.name.split("|")
    port, subset, host = 0, "", ""
    if len(parts) == 4:
        subset, host = parts[2], parts[3]
        port = int(parts[1]) if parts[1].isdigit() else 0
    if m.subset and m.subset != subset:
        return False
    if m.service and not (host and host_matches(m.service, host)):
        return False
    return not (m.port_number and m.port_number != port)


def _patch_cluster(proxy: Proxy, c: cluster_pb2.Cluster, p: CompiledPatch) -> bool | _Removed:
    if p.context not in (PC.ANY, _cluster_context(proxy, c.name)):
        return False
    if p.operation == OP.ADD or not _cluster_match(c, p.match.cluster):
        return False
    if p.operation == OP.REMOVE:
        return _REMOVED
    assert p.value is not None
    if p.operation == OP.REPLACE:
        c.CopyFrom(p.value)
    else:
        merge(c, p.value)
    return True


# --- listeners ----------------------------------------------------------------------


def _listener_context(proxy: Proxy, lst: listener_pb2.Listener) -> int:
    if proxy.type == ProxyType.ROUTER:
        return PC.GATEWAY
    return PC.SIDECAR_INBOUND if lst.traffic_direction == 1 else PC.SIDECAR_OUTBOUND


def _listener_match(lst: listener_pb2.Listener, m: Any) -> bool:
    if m.name and m.name != lst.name:
        return False
    if m.port_number and lst.address.socket_address.port_value != m.port_number:
        return False
    return not (m.listener_filter and all(f.name != m.listener_filter for f in lst.listener_filters))


def _unpack_hcm(f: lc.Filter) -> hcm_pb2.HttpConnectionManager | None:
    if f.name != HCM or not f.typed_config.type_url.endswith(".HttpConnectionManager"):
        return None
    m = hcm_pb2.HttpConnectionManager()
    f.typed_config.Unpack(m)
    return m


def _chain_match(fc: lc.FilterChain, m: Any) -> bool:
    fcm = fc.filter_chain_match
    if m.name and m.name != fc.name:
        return False
    if m.sni and m.sni not in fcm.server_names:
        return False
    if m.transport_protocol and m.transport_protocol != fcm.transport_protocol:
        return False
    if m.application_protocols and any(a not in fcm.application_protocols for a in m.application_protocols.split(",")):
        return False
    if m.destination_port and (
        not fcm.HasField("destination_port") or fcm.destination_port.value != m.destination_port
    ):
        return False
    if m.HasField("filter"):
        if m.filter.name and all(f.name != m.filter.name for f in fc.filters):
            return False
        if m.filter.HasField("sub_filter") and m.filter.sub_filter.name:
            found = False
            for f in fc.filters:
                h = _unpack_hcm(f)
                if h is not None and any(hf.name == m.filter.sub_filter.name for hf in h.http_filters):
                    found = True
            if not found:
                return False
    return True


def _chains(lst: listener_pb2.Listener) -> list[lc.FilterChain]:
    out = list(lst.filter_chains)
    if lst.HasField("default_filter_chain"):
        out.append(lst.default_filter_chain)
    return out


def _patch_listener(ctx: PushContext, proxy: Proxy, lst: listener_pb2.Listener, p: CompiledPatch) -> bool | _Removed:
    lctx = _listener_context(proxy, lst)
    if p.context not in (PC.ANY, lctx):
        return False
    if p.apply_to in ROUTE_LEVEL:
        # Inline route configurations (sidecar inbound) get route patches too.
        changed = False
        for fc in _chains(lst):
            for f in fc.filters:
                h = _unpack_hcm(f)
                if h is None or not h.HasField("route_config"):
                    continue
                if _patch_route_config(ctx, proxy, h.route_config, p, lctx):
                    f.typed_config.Pack(h)
                    changed = True
        return changed
    lm = p.match.listener
    if not _listener_match(lst, lm):
        return False
    if p.apply_to == A.LISTENER:
        if p.operation == OP.REMOVE:
            return _REMOVED
        if p.operation == OP.MERGE:
            assert p.value is not None
            merge(lst, p.value)
            return True
        return False  # ADD: handled once per proxy (_added_part)
    if p.apply_to == A.LISTENER_FILTER:
        return _list_op(lst.listener_filters, p, lambda f: f.name == lm.listener_filter, bool(lm.listener_filter))
    if p.apply_to == A.FILTER_CHAIN:
        if p.operation == OP.ADD:
            assert p.value is not None
            lst.filter_chains.append(p.value)
            return True
        changed = False
        for i in reversed(range(len(lst.filter_chains))):
            fc = lst.filter_chains[i]
            if _chain_match(fc, lm.filter_chain):
                changed = True
                if p.operation == OP.REMOVE:
                    del lst.filter_chains[i]
                else:
                    assert p.value is not None
                    merge(fc, p.value)
        if lst.HasField("default_filter_chain") and _chain_match(lst.default_filter_chain, lm.filter_chain):
            changed = True
            if p.operation == OP.REMOVE:
                lst.ClearField("default_filter_chain")
            else:
                assert p.value is not None
                merge(lst.default_filter_chain, p.value)
        return changed
    changed = False
    fm = lm.filter_chain.filter
    for fc in _chains(lst):
        if not _chain_match(fc, lm.filter_chain):
            continue
        if p.apply_to == A.NETWORK_FILTER:
            changed |= _list_op(fc.filters, p, lambda f: f.name == fm.name, bool(fm.name))
            continue
        # HTTP_FILTER: inside the connection manager(s) of the chain
        sub = str(fm.sub_filter.name)

        def is_sub(hf: hcm_pb2.HttpFilter, sub: str = sub) -> bool:
            return bool(hf.name == sub)

        for f in fc.filters:
            if fm.name and fm.name != HCM:
                continue
            h = _unpack_hcm(f)
            if h is None:
                continue
            if _list_op(h.http_filters, p, is_sub, bool(sub)):
                f.typed_config.Pack(h)
                changed = True
    return changed


def _list_op(items: MutableSequence[Any], p: CompiledPatch, is_target: Callable[[Any], bool], has_target: bool) -> bool:
    """Istio's operations on a named list (filters, listener filters, routes).
    Without a target: INSERT_BEFORE is INSERT_FIRST, INSERT_AFTER is ADD, and
    MERGE/REMOVE/REPLACE apply to every item."""
    op = p.operation

    def clone() -> Any:
        assert p.value is not None
        v = type(p.value)()
        v.CopyFrom(p.value)
        return v

    if op == OP.ADD or (op == OP.INSERT_AFTER and not has_target):
        items.append(clone())
        return True
    if op == OP.INSERT_FIRST or (op == OP.INSERT_BEFORE and not has_target):
        items.insert(0, clone())
        return True
    targets = [i for i, it in enumerate(items) if not has_target or is_target(it)]
    if not targets:
        return False
    if op == OP.INSERT_BEFORE:
        items.insert(targets[0], clone())
    elif op == OP.INSERT_AFTER:
        items.insert(targets[0] + 1, clone())
    elif op == OP.REMOVE:
        for i in reversed(targets):
            del items[i]
    elif op == OP.REPLACE:
        for i in targets:
            items[i].CopyFrom(clone())
    elif op == OP.MERGE:
        assert p.value is not None
        for i in targets:
            merge(items[i], p.value)
    else:
        return False
    return True


# --- routes -------------------------------------------------------------------------


def _route_context(proxy: Proxy, name: str) -> int:
    if proxy.type == ProxyType.ROUTER:
        return PC.GATEWAY
    return PC.SIDECAR_INBOUND if name.startswith("inbound|") else PC.SIDECAR_OUTBOUND


def _gateway_route_name(name: str) -> tuple[int, str, str]:
    """`http.8080` -> (8080, "", ""); `https.443.NAME.GW.NS` -> (443, NAME, "NS/GW")."""
    parts = name.split(".")
    port = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    if parts[0] == "https" and len(parts) >= 5:
        return port, parts[2], f"{parts[4]}/{parts[3]}"
    return port, "", ""


def _route_config_match(ctx: PushContext, proxy: Proxy, rcfg: route_pb2.RouteConfiguration, m: Any, rctx: int) -> bool:
    if m.name and m.name != rcfg.name:
        return False
    if rctx != PC.GATEWAY:
        if rcfg.name.startswith("inbound|"):
            seg = rcfg.name.split("|")[1]
        else:
            seg = rcfg.name
        port = int(seg) if seg.isdigit() else 0
        return not (m.port_number and m.port_number != port)
    port, port_name, gateway = _gateway_route_name(rcfg.name)
    if m.port_number and m.port_number != port and port_map(ctx, proxy).get(m.port_number) != port:
        return False
    if m.port_name and m.port_name != port_name:
        return False
    return not (m.gateway and m.gateway != gateway)


def _vhost_match(vh: rc.VirtualHost, m: Any) -> bool:
    if m.domain_name and m.domain_name not in vh.domains:
        return False
    return not (m.name and m.name != vh.name)


def _route_match(r: rc.Route, m: Any) -> bool:
    if m.name and m.name != r.name:
        return False
    action = r.WhichOneof("action")
    want = {RA.ROUTE: "route", RA.REDIRECT: "redirect", RA.DIRECT_RESPONSE: "direct_response"}.get(m.action)
    return want is None or action == want


def _patch_route_config(
    ctx: PushContext, proxy: Proxy, rcfg: route_pb2.RouteConfiguration, p: CompiledPatch, rctx: int
) -> bool:
    if p.context not in (PC.ANY, rctx):
        return False
    rm = p.match.route_configuration
    if not _route_config_match(ctx, proxy, rcfg, rm, rctx):
        return False
    if p.apply_to == A.ROUTE_CONFIGURATION:
        assert p.value is not None
        merge(rcfg, p.value)
        return True
    if p.apply_to == A.VIRTUAL_HOST:
        if p.operation == OP.ADD:
            assert p.value is not None
            rcfg.virtual_hosts.append(p.value)
            return True
        changed = False
        for i in reversed(range(len(rcfg.virtual_hosts))):
            vh = rcfg.virtual_hosts[i]
            if rm.HasField("vhost") and not _vhost_match(vh, rm.vhost):
                continue
            changed = True
            if p.operation == OP.REMOVE:
                del rcfg.virtual_hosts[i]
            else:
                assert p.value is not None
                merge(vh, p.value)
        return changed
    # HTTP_ROUTE
    changed = False
    route_m = rm.vhost.route if rm.HasField("vhost") and rm.vhost.HasField("route") else None
    for vh in rcfg.virtual_hosts:
        if rm.HasField("vhost") and not _vhost_match(vh, rm.vhost):
            continue
        has_target = route_m is not None and (bool(route_m.name) or route_m.action != RA.ANY)
        changed |= _list_op(vh.routes, p, lambda r: route_m is None or _route_match(r, route_m), has_target)
    return changed
