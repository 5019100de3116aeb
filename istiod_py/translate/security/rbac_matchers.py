"""AuthorizationPolicy condition values -> Envoy matchers (string, header,
CIDR, path, JWT payload metadata) and the and/or combinators for principals and
permissions. A value that cannot be matched raises `Skip` (see rbac_rules.py)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from envoy.config.core.v3 import address_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.matcher.v3 import metadata_pb2, path_pb2, string_pb2, value_pb2

# `when` keys matched on the request/connection (permissions); the rest are about the peer (principals).
PERMISSION_KEYS = ("destination.ip", "destination.port", "connection.sni")
EXPERIMENTAL = "experimental.envoy.filters."
# Internal keys for Operation fields (no `when` key exists for them).
HOST, METHOD, PATH, PORT = ":authority", ":method", ":path", "destination.port"


class Skip(Exception):
    """A value cannot be matched here (HTTP-only field on TCP, bad value)."""


# --- matchers ------------------------------------------------------------------------------


def string_matcher(value: str, prefix: str = "") -> string_pb2.StringMatcher:
    """istiod's StringMatcherWithPrefix: `*` any non-empty, `*x` suffix, `x*` prefix, else exact."""
    m = string_pb2.StringMatcher()
    if value == "*":
        m.safe_regex.regex = ".+"
    elif value.startswith("*"):
        if prefix:
            m.safe_regex.regex = re.escape(prefix) + ".*" + re.escape(value[1:])
        else:
            m.suffix = value[1:]
    elif value.endswith("*"):
        m.prefix = prefix + value[:-1]
    else:
        m.exact = prefix + value
    return m


def regex_part(value: str) -> str:
    return ".*".join(re.escape(p) for p in value.split("*"))


def cidr_range(value: str) -> address_pb2.CidrRange:
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise Skip(f"{value!r} is not an IP address or CIDR") from None
    addr = value.split("/", 1)[0]
    return address_pb2.CidrRange(address_prefix=addr, prefix_len={"value": net.prefixlen})


def header_matcher(name: str, value: str) -> rc.HeaderMatcher:
    h = rc.HeaderMatcher(name=name)
    if value == "*":
        h.present_match = True
    else:
        h.string_match.CopyFrom(string_matcher(value))
    return h


def host_header_matcher(value: str) -> rc.HeaderMatcher:
    """istiod's HostMatcherWithRegex: case-insensitive, with or without a `:port`."""
    if value == "*":
        return rc.HeaderMatcher(name=HOST, present_match=True)
    if value.startswith("*"):
        rx = ".*" + re.escape(value[1:])
    elif value.endswith("*"):
        rx = re.escape(value[:-1]) + ".*"
    else:
        rx = re.escape(value)
    h = rc.HeaderMatcher(name=HOST)
    h.string_match.safe_regex.regex = f"(?i){rx}(:[0-9]+)?"
    return h


def _template_regex(template: str) -> str:
    """Istio path templates: `{*}` one path segment, `{**}` any remaining path. Matched
    as a regex: Envoy 1.40 aborts on RBAC's uri_template matcher at config load."""
    out = []
    for part in re.split(r"(\{\*\*\}|\{\*\})", template):
        if part == "{*}":
            out.append("[^/]+")
        elif part == "{**}":
            out.append(".*")
        else:
            out.append(re.escape(part))
    return "".join(out)


def path_permission(value: str) -> rbac_pb2.Permission:
    p = rbac_pb2.Permission()
    if "{*}" in value or "{**}" in value:
        p.url_path.path.safe_regex.regex = _template_regex(value)
        return p
    p.url_path.CopyFrom(path_pb2.PathMatcher(path=string_matcher(value)))
    return p


def metadata_matcher(
    filter_name: str, path: Sequence[str], value: value_pb2.ValueMatcher
) -> metadata_pb2.MetadataMatcher:
    m = metadata_pb2.MetadataMatcher(filter=filter_name)
    for key in path:
        m.path.add(key=key)
    m.value.CopyFrom(value)
    return m


def string_value(sm: string_pb2.StringMatcher) -> value_pb2.ValueMatcher:
    return value_pb2.ValueMatcher(string_match=sm)


def list_value(sm: string_pb2.StringMatcher) -> value_pb2.ValueMatcher:
    v = value_pb2.ValueMatcher()
    v.list_match.one_of.string_match.CopyFrom(sm)
    return v


def present_value() -> value_pb2.ValueMatcher:
    return value_pb2.ValueMatcher(present_match=True)


def _never() -> rbac_pb2.Principal:
    p = rbac_pb2.Principal()
    p.not_id.any = True
    return p


def p_or(items: Sequence[rbac_pb2.Principal]) -> rbac_pb2.Principal:
    if not items:
        return _never()
    if len(items) == 1:
        return items[0]
    p = rbac_pb2.Principal()
    p.or_ids.ids.extend(items)
    return p


def p_and(items: Sequence[rbac_pb2.Principal]) -> rbac_pb2.Principal:
    if not items:
        return rbac_pb2.Principal(any=True)
    if len(items) == 1:
        return items[0]
    p = rbac_pb2.Principal()
    p.and_ids.ids.extend(items)
    return p


def m_or(items: Sequence[rbac_pb2.Permission]) -> rbac_pb2.Permission:
    if len(items) == 1:
        return items[0]
    p = rbac_pb2.Permission()
    p.or_rules.rules.extend(items)
    return p


def m_and(items: Sequence[rbac_pb2.Permission]) -> rbac_pb2.Permission:
    if not items:
        return rbac_pb2.Permission(any=True)
    if len(items) == 1:
        return items[0]
    p = rbac_pb2.Permission()
    p.and_rules.rules.extend(items)
    return p


def claim_path(key: str) -> list[str]:
    """`request.auth.claims[a][b]` -> ["a", "b"]."""
    rest = key[len("request.auth.claims") :]
    parts = re.findall(r"\[([^\]]+)\]", rest)
    if not parts or "".join(f"[{p}]" for p in parts) != rest:
        raise Skip(f"bad claim key {key!r}: use request.auth.claims[name] or request.auth.claims[a][b]")
    return parts
