"""IST0151-IST0155: EnvoyFilter patch operations, as Istio's envoyfilter analyzer.

ADD/REMOVE on ROUTE_CONFIGURATION or HTTP_ROUTE are ignored (0153, 0154); REPLACE is
valid only for HTTP_FILTER and NETWORK_FILTER (0152); relative operations (REMOVE,
REPLACE, INSERT_BEFORE/AFTER) without a priority may not apply (0151), or, when an
earlier patch of the same filter name sets proxyVersion, may not apply during an
upgrade (0155). Filters are visited in order, as Istio visits them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.protobuf import json_format

from istiod_py.config.analyzers.context import Context
from istiod_py.config.analyzers.messages import Message, new

ROUTE_LEVEL = ("ROUTE_CONFIGURATION", "HTTP_ROUTE")
REPLACEABLE = ("HTTP_FILTER", "NETWORK_FILTER")


def _instance_name(p: Any) -> str:
    value = json_format.MessageToDict(p.patch.value) if p.patch.HasField("value") else {}
    if isinstance(value, dict) and value.get("name"):
        return str(value["name"])
    if value and p.HasField("match") and p.match.HasField("listener") and p.match.listener.HasField("filter_chain"):
        return str(p.match.listener.filter_chain.filter.name)
    return ""


def analyze(ctx: Context) -> Iterator[Message]:
    versioned: list[str] = []  # filter names an earlier patch pinned to a proxyVersion
    for ef in ctx.of("EnvoyFilter"):
        spec: Any = ef.spec
        for i, p in enumerate(spec.config_patches):
            if not p.HasField("patch"):
                break
            apply_to = _enum_name(p, "apply_to")
            op = _enum_name(p.patch, "operation")
            name = _instance_name(p)
            path = f"spec.configPatches[{i}]"
            relative = False
            if op == "ADD":
                if apply_to in ROUTE_LEVEL:
                    yield new("IST0153", ef, field=path)
            elif op == "REMOVE":
                if apply_to in ROUTE_LEVEL:
                    yield new("IST0154", ef, field=path)
                else:
                    relative = True
            elif op == "REPLACE":
                if apply_to not in REPLACEABLE:
                    yield new("IST0152", ef, field=path)
                else:
                    relative = True
            elif op in ("INSERT_BEFORE", "INSERT_AFTER"):
                relative = True
            if relative and spec.priority == 0:
                yield new("IST0155" if name in versioned else "IST0151", ef, field=path)
            if p.HasField("match") and p.match.HasField("proxy") and p.match.proxy.proxy_version:
                versioned.append(name)


def _enum_name(msg: Any, field: str) -> str:
    fd = msg.DESCRIPTOR.fields_by_name[field]
    value = fd.enum_type.values_by_number.get(getattr(msg, field))
    return value.name if value is not None else ""
