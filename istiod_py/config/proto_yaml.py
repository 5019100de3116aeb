"""Strict YAML-value → protobuf parsing, driven by message descriptors.

Unlike json_format.ParseDict this reports every problem with a field path in the
user's own terms (`spec.http[0].route[0].destination.host`), accepts Go-style
durations (`3m`, `1h30m`) as Istio does, and never stops at the first error.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import math
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from istiod_py.config.model import clip, quote

_INT_RANGES: Mapping[int, tuple[int, int]] = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_FLOAT_TYPES = (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT)
_FLOAT32_MAX = 3.4028234663852886e38
_WRAPPERS = frozenset(
    f"google.protobuf.{n}Value"
    for n in ("Bool", "String", "Bytes", "Int32", "UInt32", "Int64", "UInt64", "Double", "Float")
)
# Go's time.Duration (what Istio's CRD validation and istiod parse durations into)
# holds at most 2^63-1 ns, about 292 years; protobuf's Duration allows 10,000 years.
# The smaller is the limit: a longer duration is refused where Kubernetes refuses it.
MAX_DURATION_NS = 2**63 - 1
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS_NS: Mapping[str, int] = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}


@dataclass(frozen=True)
class FieldProblem:
    path: str
    message: str


class _Fields:
    """Per-message lookup table: json name and proto name → field; built once per descriptor."""

    __slots__ = ("by_name", "json_names")

    def __init__(self, desc: Any) -> None:
        self.by_name: dict[str, FieldDescriptor] = {}
        for f in desc.fields:
            self.by_name[f.json_name] = f
            self.by_name[f.name] = f
        self.json_names = sorted(f.json_name for f in desc.fields)


_FIELDS_CACHE: dict[str, _Fields] = {}


def _fields(desc: Any) -> _Fields:
    found = _FIELDS_CACHE.get(desc.full_name)
    if found is None:
        found = _FIELDS_CACHE[desc.full_name] = _Fields(desc)
    return found


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "list",
        dict: "mapping",
    }.get(type(value), type(value).__name__)


def parse_duration(text: str) -> int | None:
    """Go/Istio duration (`1h30m`, `0.5s`, `100ms`) to nanoseconds; None if malformed."""
    if not text:
        return None
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _DURATION_UNITS_NS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not math.isfinite(total):
        return None
    return round(total)


class ProtoYamlParser:
    """Parses one YAML mapping into a message, collecting problems rather than raising."""

    def __init__(self) -> None:
        self.problems: list[FieldProblem] = []

    def parse(self, value: Any, message: Message, path: str) -> None:
        self._message(value, message, path)

    def _fail(self, path: str, message: str) -> None:
        self.problems.append(FieldProblem(path, message))

    def _guarded(self, value: Any, msg: Message, fd: FieldDescriptor, path: str) -> None:
        """One field, total: a value the checks below did not foresee (protobuf refusing
        it, a RecursionError) becomes a problem on this field's path, not an exception."""
        try:
            self._field(value, msg, fd, path)
        except Exception as exc:
            self._fail(path, f"invalid value {quote(value)}: {clip(str(exc), 120) or type(exc).__name__}")

    def _message(self, value: Any, msg: Message, path: str) -> None:
        desc = msg.DESCRIPTOR
        special = _SPECIAL.get(desc.full_name)
        if special is not None:
            special(self, value, msg, path)
            return
        if not isinstance(value, dict):
            self._fail(path, f"expected a mapping of fields, got {_type_name(value)}")
            return
        table = _fields(desc)
        seen_oneofs: dict[str, str] = {}
        for key, item in value.items():
            fd = table.by_name.get(key) if isinstance(key, str) else None
            if fd is None:
                self._unknown(path, key, table)
                continue
            if item is None:
                continue  # Kubernetes treats an explicit null as unset.
            sub = f"{path}.{fd.json_name}"
            if fd.containing_oneof is not None and not self._oneof_ok(fd, seen_oneofs, sub):
                continue
            self._guarded(item, msg, fd, sub)

    def _unknown(self, path: str, key: Any, table: _Fields) -> None:
        text = clip(str(key), 60) if isinstance(key, str) else quote(key)
        hint = difflib.get_close_matches(text, table.json_names, n=1) if len(text) <= 60 else []
        suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
        self._fail(
            f"{path}.{text}",
            f"unknown field '{text}'{suggestion} (known fields: {', '.join(table.json_names)})",
        )

    def _oneof_ok(self, fd: FieldDescriptor, seen: dict[str, str], path: str) -> bool:
        oneof = fd.containing_oneof
        assert oneof is not None
        other = seen.get(oneof.name)
        if other is not None:
            self._fail(path, f"only one of '{other}' and '{fd.json_name}' may be set")
            return False
        seen[oneof.name] = fd.json_name
        return True

    def _field(self, value: Any, msg: Message, fd: FieldDescriptor, path: str) -> None:
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            self._map(value, getattr(msg, fd.name), fd, path)
        elif fd.is_repeated:
            self._repeated(value, getattr(msg, fd.name), fd, path)
        elif fd.message_type is not None:
            sub = getattr(msg, fd.name)
            sub.SetInParent()
            self._message(value, sub, path)
        else:
            ok, scalar = self._scalar(value, fd, path)
            if ok:
                setattr(msg, fd.name, scalar)

    def _repeated(self, value: Any, container: Any, fd: FieldDescriptor, path: str) -> None:
        if not isinstance(value, list):
            self._fail(path, f"expected a list, got {_type_name(value)}")
            return
        for i, item in enumerate(value):
            sub = f"{path}[{i}]"
            if fd.message_type is not None:
                self._message(item, container.add(), sub)
            else:
                ok, scalar = self._scalar(item, fd, sub)
                if ok:
                    container.append(scalar)

    def _map(self, value: Any, container: Any, fd: FieldDescriptor, path: str) -> None:
        if not isinstance(value, dict):
            self._fail(path, f"expected a mapping, got {_type_name(value)}")
            return
        entry: Any = fd.message_type
        key_fd = entry.fields_by_name["key"]
        value_fd = entry.fields_by_name["value"]
        for raw_key, item in value.items():
            sub = f"{path}[{clip(str(raw_key), 60) if isinstance(raw_key, str) else quote(raw_key)}]"
            ok, key = self._map_key(raw_key, key_fd, sub)
            if not ok:
                continue
            if value_fd.message_type is not None:
                self._message(item, container[key], sub)
            else:
                ok, scalar = self._scalar(item, value_fd, sub)
                if ok:
                    container[key] = scalar

    def _map_key(self, raw: Any, fd: FieldDescriptor, path: str) -> tuple[bool, Any]:
        if fd.type == FieldDescriptor.TYPE_STRING:
            if isinstance(raw, str):
                return True, raw
            self._fail(path, f"map key must be a string, got {_type_name(raw)}; quote it")
            return False, None
        # Integer keys (e.g. portLevelMtls) arrive as ints from YAML or strings from JSON.
        if isinstance(raw, str) and len(raw) <= 20 and raw.strip().lstrip("-").isdigit():
            raw = int(raw)
        return self._scalar(raw, fd, path)

    def _scalar(self, value: Any, fd: FieldDescriptor, path: str) -> tuple[bool, Any]:
        t = fd.type
        if t == FieldDescriptor.TYPE_STRING:
            return self._expect(isinstance(value, str), value, path, "a string (quote values like true or 1)")
        if t == FieldDescriptor.TYPE_BOOL:
            return self._expect(isinstance(value, bool), value, path, "true or false")
        if t in _INT_RANGES:
            return self._integer(value, t, path)
        if t in _FLOAT_TYPES:
            return self._float(value, t, path)
        if t == FieldDescriptor.TYPE_ENUM:
            return self._enum(value, fd.enum_type, path)  # type: ignore[arg-type]
        if t == FieldDescriptor.TYPE_BYTES:
            return self._bytes(value, path)
        self._fail(path, f"unsupported field type {t}")
        return False, None

    def _expect(self, ok: bool, value: Any, path: str, wanted: str) -> tuple[bool, Any]:
        if not ok:
            self._fail(path, f"expected {wanted}, got {_type_name(value)} {quote(value)}")
        return ok, value

    def _integer(self, value: Any, t: int, path: str) -> tuple[bool, Any]:
        if (
            isinstance(value, str)
            and t
            in (
                FieldDescriptor.TYPE_INT64,
                FieldDescriptor.TYPE_UINT64,
            )
            and len(value) <= 21
            and value.lstrip("-").isdigit()
        ):
            value = int(value)  # 64-bit integers are strings in proto JSON.
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            return self._expect(False, value, path, "an integer")
        lo, hi = _INT_RANGES[t]
        if not lo <= value <= hi:
            self._fail(path, f"integer {quote(value)} out of range [{lo}, {hi}]")
            return False, None
        return True, value

    def _float(self, value: Any, t: int, path: str) -> tuple[bool, Any]:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok:
            return self._expect(False, value, path, "a number")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        # Proto JSON (and so Kubernetes) has no spelling for NaN or infinities in
        # these fields' ranges, and a float32 field cannot hold a larger double.
        limit = _FLOAT32_MAX if t == FieldDescriptor.TYPE_FLOAT else sys.float_info.max
        if not math.isfinite(number) or abs(number) > limit:
            self._fail(path, f"number {quote(value)} out of range: it must be finite and at most {limit:g}")
            return False, None
        return True, number

    def _enum(self, value: Any, enum: EnumDescriptor, path: str) -> tuple[bool, Any]:
        if isinstance(value, str) and value in enum.values_by_name:
            return True, enum.values_by_name[value].number
        names = ", ".join(v.name for v in enum.values)
        self._fail(path, f"invalid value {quote(value)}: must be one of {names}")
        return False, None

    def _bytes(self, value: Any, path: str) -> tuple[bool, Any]:
        if isinstance(value, str):
            try:
                return True, base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                pass
        self._fail(path, "expected base64-encoded bytes")
        return False, None

    # Well-known types -------------------------------------------------------------------

    def _duration(self, value: Any, msg: Message, path: str) -> None:
        nanos = parse_duration(value) if isinstance(value, str) and len(value) <= 64 else None
        if nanos is None:
            self._fail(path, f"invalid duration {quote(value)}: use a number with a unit, like 5s, 100ms, 1m or 1h30m")
            return
        if nanos > MAX_DURATION_NS:
            self._fail(path, f"duration {quote(value)} out of range: at most 2562047h (about 292 years)")
            return
        seconds, rest = divmod(nanos, 1_000_000_000)
        msg.seconds = seconds  # type: ignore[attr-defined]
        msg.nanos = rest  # type: ignore[attr-defined]

    def _wrapper(self, value: Any, msg: Message, path: str) -> None:
        fd: Any = msg.DESCRIPTOR.fields_by_name["value"]
        ok, scalar = self._scalar(value, fd, path)
        if ok:
            msg.value = scalar  # type: ignore[attr-defined]

    def _struct(self, value: Any, msg: Message, path: str) -> None:
        if not isinstance(value, dict):
            self._fail(path, f"expected a mapping, got {_type_name(value)}")
            return
        try:
            msg.update(value)  # type: ignore[attr-defined]
        except (ValueError, TypeError, OverflowError) as exc:
            self._fail(path, f"not representable as JSON: {clip(str(exc), 120)}")


_Handler = Callable[[ProtoYamlParser, Any, Message, str], None]
_SPECIAL: dict[str, _Handler] = {
    "google.protobuf.Duration": ProtoYamlParser._duration,
    "google.protobuf.Struct": ProtoYamlParser._struct,
    **{name: ProtoYamlParser._wrapper for name in _WRAPPERS},
}


def parse_message(value: Any, message: Message, path: str = "spec") -> list[FieldProblem]:
    """Fill `message` from a YAML value; returns the problems found (empty means valid)."""
    parser = ProtoYamlParser()
    parser.parse(value, message, path)
    return parser.problems
