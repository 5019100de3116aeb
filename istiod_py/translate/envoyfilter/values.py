"""Patch values: Struct/TypedStruct -> the Envoy proto, and istiod's merge
(an Any of the same type is merged as its real message)."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import Any, TypeVar

from google.protobuf import any_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import Message

from .model import TYPED_STRUCT_TYPES, PatchError

# --- values: Struct -> Envoy proto ---------------------------------------------------

M = TypeVar("M", bound=Message)


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

ATOMIC = frozenset(
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
            if not dst.HasField(fd.name) or name in ATOMIC:
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
