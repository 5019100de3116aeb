"""Would Envoy reject this? protoc-gen-validate rules carried in Envoy's
descriptors, plus a few load-time rules that are not annotated."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import descriptor
from google.protobuf.message import DecodeError, Message

from .model import HCM, ROUTER, TERMINAL_NETWORK_FILTERS
from .values import ATOMIC, message_class

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
                rules is not None and fd.message_type.full_name in ATOMIC and "value" in fd.message_type.fields_by_name
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
