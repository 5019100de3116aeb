"""A node's metadata (a protobuf Struct) as plain Python values, for parse_proxy.

The same dict json_format.MessageToDict builds (same keys in the same order,
numbers as floats, null as None), by a direct walk: MessageToDict goes through
its generic ProtoJSON printer (descriptor lookups and dispatch per value), which
was most of a registration's CPU in a connect of 1,000 distinct proxies."""

from __future__ import annotations

import math
from typing import Any

from google.protobuf import json_format, struct_pb2


class _Unusual(Exception):
    """A value the direct walk leaves to MessageToDict (it raises on it)."""


def _value(v: struct_pb2.Value) -> Any:
    which = v.WhichOneof("kind")
    if which == "string_value":
        return v.string_value
    if which == "struct_value":
        return _struct(v.struct_value)
    if which == "bool_value":
        return v.bool_value
    if which == "number_value":
        x = v.number_value
        if math.isinf(x) or math.isnan(x):
            raise _Unusual
        return x
    if which == "list_value":
        return [_value(e) for e in v.list_value.values]
    return None  # unset, or null_value


def _struct(s: struct_pb2.Struct) -> dict[str, Any]:
    return {k: _value(v) for k, v in s.fields.items()}


def metadata_dict(s: struct_pb2.Struct) -> dict[str, Any]:
    """`json_format.MessageToDict(s)` for a Struct, cheaper; errors as it raises them."""
    try:
        return _struct(s)
    except _Unusual:
        return dict(json_format.MessageToDict(s))
