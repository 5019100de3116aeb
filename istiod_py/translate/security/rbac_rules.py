"""One AuthorizationPolicy rule -> one Envoy RBAC policy: `from` and source
`when` keys become principals, `to` and destination/connection `when` keys
permissions (see rbac.py for how rules combine and what drops a rule)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.matcher.v3 import string_pb2, value_pb2

from . import jwt
from .rbac_matchers import (
    EXPERIMENTAL,
    HOST,
    METHOD,
    PATH,
    PERMISSION_KEYS,
    PORT,
    Skip,
    cidr_range,
    claim_path,
    header_matcher,
    host_header_matcher,
    list_value,
    m_and,
    m_or,
    metadata_matcher,
    p_and,
    p_or,
    path_permission,
    present_value,
    regex_part,
    string_matcher,
    string_value,
)

if TYPE_CHECKING:
    from istiod_py.config.model import Config


# istio.security.v1beta1.AuthorizationPolicy.Action
ALLOW, DENY, AUDIT, CUSTOM = 0, 1, 2, 3


@dataclass(frozen=True)
class _Generator:
    """Builds one matcher per (key, value), knowing the workload's JWT issuers."""

    issuers: tuple[str, ...]
    policy_ns: str
    tcp: bool

    def _http_only(self, key: str) -> None:
        if self.tcp:
            raise Skip(f"{key} is HTTP only")

    # principals
    def principal(self, key: str, value: str) -> rbac_pb2.Principal:
        p = rbac_pb2.Principal()
        if key == "source.principal":
            p.authenticated.principal_name.CopyFrom(string_matcher(value, "spiffe://"))
        elif key == "source.namespace":
            p.authenticated.principal_name.safe_regex.regex = f".*/ns/{regex_part(value)}/.*"
        elif key == "source.serviceAccount":
            ns, _, sa = value.rpartition("/")
            ns = ns or self.policy_ns
            p.authenticated.principal_name.safe_regex.regex = f"spiffe://[^/]+/ns/{regex_part(ns)}/sa/{regex_part(sa)}"
        elif key == "source.ip":
            p.direct_remote_ip.CopyFrom(cidr_range(value))
        elif key == "remote.ip":
            p.remote_ip.CopyFrom(cidr_range(value))
        elif key.startswith("request.headers[") and key.endswith("]"):
            self._http_only(key)
            name = key[len("request.headers[") : -1]
            if not name:
                raise Skip("request.headers[] needs a header name")
            p.header.CopyFrom(header_matcher(name, value))
        elif key == "request.auth.principal":
            self._http_only(key)
            return self.request_principal(value)
        elif key == "request.auth.audiences":
            self._http_only(key)
            return self.claim(["aud"], value)
        elif key == "request.auth.presenter":
            self._http_only(key)
            return self.claim(["azp"], value)
        elif key.startswith("request.auth.claims["):
            self._http_only(key)
            return self.claim(claim_path(key), value)
        else:
            raise Skip(f"unknown condition key {key!r}")
        return p

    def _jwt(self, issuer: str, path: Sequence[str], value: value_pb2.ValueMatcher) -> rbac_pb2.Principal:
        p = rbac_pb2.Principal()
        p.metadata.CopyFrom(metadata_matcher(jwt.PAYLOAD_METADATA_FILTER, [issuer, *path], value))
        return p

    def claim(self, path: Sequence[str], value: str) -> rbac_pb2.Principal:
        """A claim may be a string or a list of strings in the payload: match either."""
        sm = string_matcher(value)
        out = []
        for iss in self.issuers:
            out.append(self._jwt(iss, path, string_value(sm)))
            out.append(self._jwt(iss, path, list_value(sm)))
        return p_or(out)

    def request_principal(self, value: str) -> rbac_pb2.Principal:
        """`iss/sub` (with `*` wildcards) split over the known issuers."""
        out: list[rbac_pb2.Principal] = []
        for iss in self.issuers:
            head = iss + "/"
            if value == "*":
                out.append(self._jwt(iss, ["iss"], present_value()))
            elif value.startswith("*"):
                tail = value[1:]
                out.append(self._jwt(iss, ["sub"], string_value(string_pb2.StringMatcher(suffix=tail))))
                # The suffix may reach back into "iss/": then sub is the rest, exactly.
                for k in range(1, len(tail) + 1):
                    if head.endswith(tail[:k]):
                        sm = string_pb2.StringMatcher(exact=tail[k:])
                        out.append(self._jwt(iss, ["sub"], string_value(sm)))
            elif value.endswith("*"):
                lead = value[:-1]
                if lead.startswith(head) and len(lead) > len(head):
                    sm = string_pb2.StringMatcher(prefix=lead[len(head) :])
                    out.append(self._jwt(iss, ["sub"], string_value(sm)))
                elif head.startswith(lead):
                    out.append(self._jwt(iss, ["iss"], present_value()))
            elif value.startswith(head):
                sm = string_pb2.StringMatcher(exact=value[len(head) :])
                out.append(self._jwt(iss, ["sub"], string_value(sm)))
        return p_or(out)

    # permissions
    def permission(self, key: str, value: str) -> rbac_pb2.Permission:
        p = rbac_pb2.Permission()
        if key == "destination.ip":
            p.destination_ip.CopyFrom(cidr_range(value))
        elif key == "destination.port":
            if not value.isdigit() or not 0 < int(value) < 65536:
                raise Skip(f"{value!r} is not a port")
            p.destination_port = int(value)
        elif key == "connection.sni":
            p.requested_server_name.CopyFrom(string_matcher(value))
        elif key.startswith(EXPERIMENTAL):
            m = re.fullmatch(r"experimental\.(envoy\.filters\.[\w.]+)\[([^\]]+)\]", key)
            if m is None:
                raise Skip(f"bad key {key!r}: use experimental.envoy.filters.<filter>[<key>]")
            p.metadata.CopyFrom(metadata_matcher(m.group(1), [m.group(2)], list_value(string_matcher(value))))
        elif key == HOST:
            self._http_only("hosts")
            p.header.CopyFrom(host_header_matcher(value))
        elif key == METHOD:
            self._http_only("methods")
            p.header.CopyFrom(rc.HeaderMatcher(name=METHOD, string_match=string_pb2.StringMatcher(exact=value)))
        elif key == PATH:
            self._http_only("paths")
            return path_permission(value)
        else:
            raise Skip(f"unknown key {key!r}")
        return p


Field = tuple[str, Sequence[str], Sequence[str]]  # (key, values, notValues)


def _is_permission_key(key: str) -> bool:
    return key in PERMISSION_KEYS or key.startswith(EXPERIMENTAL)


def _source_fields(src: Any) -> list[Field]:
    return [
        ("source.principal", src.principals, src.not_principals),
        ("request.auth.principal", src.request_principals, src.not_request_principals),
        ("source.namespace", src.namespaces, src.not_namespaces),
        ("source.serviceAccount", src.service_accounts, src.not_service_accounts),
        ("source.ip", src.ip_blocks, src.not_ip_blocks),
        ("remote.ip", src.remote_ip_blocks, src.not_remote_ip_blocks),
    ]


def _operation_fields(op: Any) -> list[Field]:
    return [
        (HOST, op.hosts, op.not_hosts),
        (PORT, op.ports, op.not_ports),
        (METHOD, op.methods, op.not_methods),
        (PATH, op.paths, op.not_paths),
    ]


def _fields_to_matchers(
    fields: Sequence[Field], build: Callable[[str, str], Any], strict: bool
) -> list[tuple[list[Any], list[Any]]]:
    """Per field (matchers for values, for notValues). A value that cannot be built
    drops the rule when `strict` (ALLOW), else just that value (istiod's checkError)."""
    out = []
    for key, values, not_values in fields:
        pair: tuple[list[Any], list[Any]] = ([], [])
        for target, vals in zip(pair, (values, not_values), strict=True):
            for v in vals:
                try:
                    target.append(build(key, v))
                except Skip:
                    if strict:
                        raise
        out.append(pair)
    return out


def _principal_of(fields: Sequence[Field], gen: _Generator, strict: bool) -> rbac_pb2.Principal:
    parts: list[rbac_pb2.Principal] = []
    for yes, no in _fields_to_matchers(fields, gen.principal, strict):
        if yes:
            parts.append(p_or(yes))
        if no:
            parts.append(rbac_pb2.Principal(not_id=p_or(no)))
    return p_and(parts)


def _permission_of(fields: Sequence[Field], gen: _Generator, strict: bool) -> rbac_pb2.Permission:
    parts: list[rbac_pb2.Permission] = []
    for yes, no in _fields_to_matchers(fields, gen.permission, strict):
        if yes:
            parts.append(m_or(yes))
        if no:
            parts.append(rbac_pb2.Permission(not_rule=m_or(no)))
    return m_and(parts)


def rule_policy(rule: Any, gen: _Generator, action: int) -> rbac_pb2.Policy | None:
    """One Istio rule -> one Envoy policy; None when istiod would skip it (ALLOW on TCP)."""
    strict = action == ALLOW
    when_principal: list[Field] = []
    when_permission: list[Field] = []
    for c in rule.when:
        field_ = (c.key, c.values, c.not_values)
        (when_permission if _is_permission_key(c.key) else when_principal).append(field_)
    try:
        principals = [
            _principal_of([*_source_fields(f.source), *when_principal], gen, strict) for f in getattr(rule, "from")
        ] or [_principal_of(when_principal, gen, strict)]
        permissions = [
            _permission_of([*_operation_fields(t.operation), *when_permission], gen, strict) for t in rule.to
        ] or [_permission_of(when_permission, gen, strict)]
    except Skip:
        return None
    policy = rbac_pb2.Policy()
    policy.principals.extend(principals)
    policy.permissions.extend(permissions)
    return policy


def policy_name(cfg: Config, index: int, prefix: str = "") -> str:
    return f"{prefix}ns[{cfg.meta.namespace}]-policy[{cfg.meta.name}]-rule[{index}]"


def build_rbac(
    configs: Sequence[Config],
    envoy_action: int,
    istio_action: int,
    issuers: tuple[str, ...],
    tcp: bool,
    name_prefix: str = "",
) -> rbac_pb2.RBAC:
    out = rbac_pb2.RBAC(action=envoy_action)
    for cfg in configs:
        spec: Any = cfg.spec
        gen = _Generator(issuers, cfg.meta.namespace, tcp)
        for i, rule in enumerate(spec.rules):
            policy = rule_policy(rule, gen, istio_action)
            if policy is not None:
                out.policies[policy_name(cfg, i, name_prefix)].CopyFrom(policy)
    return out
