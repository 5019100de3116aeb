"""xds/node.metadata_dict is json_format.MessageToDict for node metadata: the
same dict, key order and value types, so parse_proxy sees what it always saw."""

from __future__ import annotations

import math
from typing import Any

import pytest
from google.protobuf import json_format, struct_pb2

from istiod_py.xds.node import metadata_dict

CASES: list[dict[str, Any]] = [
    {},
    {"NAMESPACE": "default", "LABELS": {"app": "reviews", "version": "v1"}, "SERVICE_ACCOUNT": "bookinfo"},
    {"INTERCEPTION_MODE": "NONE", "CLUSTER_ID": "Kubernetes", "WORKLOAD_NAME": "r", "PLATFORM_METADATA": {}},
    {"n": 3, "f": -1.5, "big": 2.0**60, "t": True, "F": False, "nul": None, "e": "", "ü": "ñ"},
    {"l": [1, "x", None, {"a": [], "b": [[True]]}, []], "deep": {"a": {"b": {"c": {"d": "e"}}}}},
    {"LABELS": {"k": 1, "j": None, "m": {"x": "y"}}},  # not strings: parse_proxy's concern
]


def _struct(d: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(d)
    return s


@pytest.mark.parametrize("case", CASES)
def test_same_dict_as_message_to_dict(case: dict[str, Any]) -> None:
    s = _struct(case)
    want = json_format.MessageToDict(s)
    got = metadata_dict(s)
    assert got == want
    assert repr(got) == repr(want)  # key order and value types (1.0 vs 1) too


def test_a_value_with_no_kind_is_none_as_in_message_to_dict() -> None:
    s = struct_pb2.Struct()
    s.fields["unset"]  # creates an entry whose Value has no kind
    assert metadata_dict(s) == json_format.MessageToDict(s) == {"unset": None}


@pytest.mark.parametrize("x", [math.inf, -math.inf, math.nan])
def test_unrepresentable_numbers_fail_as_in_message_to_dict(x: float) -> None:
    s = _struct({"LABELS": {"a": [x]}})
    with pytest.raises(Exception) as want:
        json_format.MessageToDict(s)
    with pytest.raises(Exception) as got:
        metadata_dict(s)
    assert type(got.value) is type(want.value) and str(got.value) == str(want.value)
