"""AuthorizationPolicy -> Envoy RBAC (HTTP and network), as istiod builds it.

Selection: a policy in the root namespace applies mesh-wide, one elsewhere to its
own namespace; a `selector` narrows it to workloads with those labels. Policies
with `targetRef(s)` target Gateway API gateways / waypoints, which this control
plane does not run: they apply to no proxy (see `unsupported_reason`).

Evaluation order (istiod's filter chain): jwt_authn, then CUSTOM (RBAC shadow
rules + ext_authz), AUDIT (RBAC action LOG), DENY, ALLOW, before the router. An
ALLOW filter is emitted whenever an ALLOW policy applies, so ALLOW policies whose
rules all drop out (`spec: {}`, or HTTP-only rules on a TCP port) deny everything.

Each rule becomes one RBAC policy `ns[NS]-policy[NAME]-rule[I]`: its `from`
entries are ORed principals, its `to` entries ORed permissions, and each `when`
condition is ANDed into every principal (source/request keys) or permission
(destination/connection keys). Values of one field are ORed; `notX` fields become
a negated OR. On a TCP port an HTTP-only field drops the whole rule of an ALLOW
policy (smaller allow) and only that field of a DENY/AUDIT/CUSTOM one (wider deny),
exactly istiod's checkError.

Request principals (`iss/sub`) and request.auth.* match the payload jwt_authn
stores under `envoy.filters.http.jwt_authn` / <issuer> (`payload_in_metadata`):
upstream Envoy has no istio_authn filter, so a pattern is split per known issuer
of the workload's RequestAuthentications, which is exact because only those
issuers can ever have a verified payload."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as net_rbac_pb2
from envoy.type.matcher.v3 import metadata_pb2, path_pb2, string_pb2, value_pb2

from istiod_py.model import labels_match

from ..features import HTTP_FILTER_FEATURES, http_filter_feature, network_filter_feature
from . import ext_authz, jwt

if TYPE_CHECKING:
    from istiod_py.config.model import Config
    from istiod_py.model import Proxy

    from ..context import PushContext

HTTP_RBAC_FILTER = "envoy.filters.http.rbac"
NETWORK_RBAC_FILTER = "envoy.filters.network.rbac"
TCP_STAT_PREFIX = "tcp."

# istio.security.v1beta1.AuthorizationPolicy.Action
ALLOW, DENY, AUDIT, CUSTOM = 0, 1, 2, 3
# envoy.config.rbac.v3.RBAC.Action
_ENVOY_ALLOW, _ENVOY_DENY, _ENVOY_LOG = 0, 1, 2

# `when` keys matched on the request/connection (permissions); the rest are about the peer (principals).
_PERMISSION_KEYS = ("destination.ip", "destination.port", "connection.sni")
_EXPERIMENTAL = "experimental.envoy.filters."
# Internal keys for Operation fields (no `when` key exists for them).
_HOST, _METHOD, _PATH, _PORT = ":authority", ":method", ":path", "destination.port"


class _Skip(Exception):
    """A value cannot be matched here (HTTP-only field on TCP, bad value)."""


# --- selection ---------------------------------------------------------------------------


def unsupported_reason(cfg: Config) -> str | None:
    """Why a policy applies to no proxy here, for validation/analysis to report."""
    spec: Any = cfg.spec
    if spec.HasField("targetRef") or len(spec.targetRefs):
        return (
            f"{cfg.meta.kind} {cfg.meta.namespace}/{cfg.meta.name}: targetRef/targetRefs (Gateway API "
            "gateways and waypoints) is not supported; use spec.selector to pick sidecars or gateways"
        )
    return None


def applies(cfg: Config, proxy: Proxy, root_namespace: str) -> bool:
    if unsupported_reason(cfg) is not None:
        return False
    if cfg.meta.namespace not in (root_namespace, proxy.namespace):
        return False
    spec: Any = cfg.spec
    if spec.HasField("selector") and spec.selector.match_labels:
        return labels_match(dict(spec.selector.match_labels), proxy.labels)
    return True


@dataclass(frozen=True)
class Selected:
    custom: tuple[Config, ...]
    audit: tuple[Config, ...]
    deny: tuple[Config, ...]
    allow: tuple[Config, ...]
    request_authn: tuple[Config, ...]

    @property
    def empty(self) -> bool:
        return not (self.custom or self.audit or self.deny or self.allow or self.request_authn)


def select(ctx: PushContext, proxy: Proxy) -> Selected:
    def build() -> Selected:
        root = ctx.state.mesh.root_namespace
        by_action: dict[int, list[Config]] = {ALLOW: [], DENY: [], AUDIT: [], CUSTOM: []}
        for cfg in ctx.state.of_kind("AuthorizationPolicy"):
            if applies(cfg, proxy, root):
                spec: Any = cfg.spec
                by_action.setdefault(int(spec.action), []).append(cfg)
        ra = tuple(c for c in ctx.state.of_kind("RequestAuthentication") if applies(c, proxy, root))
        return Selected(
            tuple(by_action[CUSTOM]), tuple(by_action[AUDIT]), tuple(by_action[DENY]), tuple(by_action[ALLOW]), ra
        )

    return ctx.cached(("authz-select", proxy.namespace, proxy.labels_key), build)


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


def _regex_part(value: str) -> str:
    return ".*".join(re.escape(p) for p in value.split("*"))


def _cidr(value: str) -> address_pb2.CidrRange:
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise _Skip(f"{value!r} is not an IP address or CIDR") from None
    addr = value.split("/", 1)[0]
    return address_pb2.CidrRange(address_prefix=addr, prefix_len={"value": net.prefixlen})


def _header(name: str, value: str) -> rc.HeaderMatcher:
    h = rc.HeaderMatcher(name=name)
    if value == "*":
        h.present_match = True
    else:
        h.string_match.CopyFrom(string_matcher(value))
    return h


def _host_header(value: str) -> rc.HeaderMatcher:
    """istiod's HostMatcherWithRegex: case-insensitive, with or without a `:port`."""
    if value == "*":
        return rc.HeaderMatcher(name=_HOST, present_match=True)
    if value.startswith("*"):
        rx = ".*" + re.escape(value[1:])
    elif value.endswith("*"):
        rx = re.escape(value[:-1]) + ".*"
    else:
        rx = re.escape(value)
    h = rc.HeaderMatcher(name=_HOST)
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


def _path_permission(value: str) -> rbac_pb2.Permission:
    p = rbac_pb2.Permission()
    if "{*}" in value or "{**}" in value:
        p.url_path.path.safe_regex.regex = _template_regex(value)
        return p
    p.url_path.CopyFrom(path_pb2.PathMatcher(path=string_matcher(value)))
    return p


def _metadata(filter_name: str, path: Sequence[str], value: value_pb2.ValueMatcher) -> metadata_pb2.MetadataMatcher:
    m = metadata_pb2.MetadataMatcher(filter=filter_name)
    for key in path:
        m.path.add(key=key)
    m.value.CopyFrom(value)
    return m


def _string_value(sm: string_pb2.StringMatcher) -> value_pb2.ValueMatcher:
    return value_pb2.ValueMatcher(string_match=sm)


def _list_value(sm: string_pb2.StringMatcher) -> value_pb2.ValueMatcher:
    v = value_pb2.ValueMatcher()
    v.list_match.one_of.string_match.CopyFrom(sm)
    return v


def _present() -> value_pb2.ValueMatcher:
    return value_pb2.ValueMatcher(present_match=True)


def _never() -> rbac_pb2.Principal:
    p = rbac_pb2.Principal()
    p.not_id.any = True
    return p


def _p_or(items: Sequence[rbac_pb2.Principal]) -> rbac_pb2.Principal:
    if not items:
        return _never()
    if len(items) == 1:
        return items[0]
    p = rbac_pb2.Principal()
    p.or_ids.ids.extend(items)
    return p


def _p_and(items: Sequence[rbac_pb2.Principal]) -> rbac_pb2.Principal:
    if not items:
        return rbac_pb2.Principal(any=True)
    if len(items) == 1:
        return items[0]
    p = rbac_pb2.Principal()
    p.and_ids.ids.extend(items)
    return p


def _m_or(items: Sequence[rbac_pb2.Permission]) -> rbac_pb2.Permission:
    if len(items) == 1:
        return items[0]
    p = rbac_pb2.Permission()
    p.or_rules.rules.extend(items)
    return p


def _m_and(items: Sequence[rbac_pb2.Permission]) -> rbac_pb2.Permission:
    if not items:
        return rbac_pb2.Permission(any=True)
    if len(items) == 1:
        return items[0]
    p = rbac_pb2.Permission()
    p.and_rules.rules.extend(items)
    return p


def _claim_path(key: str) -> list[str]:
    """`request.auth.claims[a][b]` -> ["a", "b"]."""
    rest = key[len("request.auth.claims") :]
    parts = re.findall(r"\[([^\]]+)\]", rest)
    if not parts or "".join(f"[{p}]" for p in parts) != rest:
        raise _Skip(f"bad claim key {key!r}: use request.auth.claims[name] or request.auth.claims[a][b]")
    return parts


@dataclass(frozen=True)
class _Generator:
    """Builds one matcher per (key, value), knowing the workload's JWT issuers."""

    issuers: tuple[str, ...]
    policy_ns: str
    tcp: bool

    def _http_only(self, key: str) -> None:
        if self.tcp:
            raise _Skip(f"{key} is HTTP only")

    # principals
    def principal(self, key: str, value: str) -> rbac_pb2.Principal:
        p = rbac_pb2.Principal()
        if key == "source.principal":
            p.authenticated.principal_name.CopyFrom(string_matcher(value, "spiffe://"))
        elif key == "source.namespace":
            p.authenticated.principal_name.safe_regex.regex = f".*/ns/{_regex_part(value)}/.*"
        elif key == "source.serviceAccount":
            ns, _, sa = value.rpartition("/")
            ns = ns or self.policy_ns
            p.authenticated.principal_name.safe_regex.regex = (
                f"spiffe://[^/]+/ns/{_regex_part(ns)}/sa/{_regex_part(sa)}"
            )
        elif key == "source.ip":
            p.direct_remote_ip.CopyFrom(_cidr(value))
        elif key == "remote.ip":
            p.remote_ip.CopyFrom(_cidr(value))
        elif key.startswith("request.headers[") and key.endswith("]"):
            self._http_only(key)
            name = key[len("request.headers[") : -1]
            if not name:
                raise _Skip("request.headers[] needs a header name")
            p.header.CopyFrom(_header(name, value))
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
            return self.claim(_claim_path(key), value)
        else:
            raise _Skip(f"unknown condition key {key!r}")
        return p

    def _jwt(self, issuer: str, path: Sequence[str], value: value_pb2.ValueMatcher) -> rbac_pb2.Principal:
        p = rbac_pb2.Principal()
        p.metadata.CopyFrom(_metadata(jwt.PAYLOAD_METADATA_FILTER, [issuer, *path], value))
        return p

    def claim(self, path: Sequence[str], value: str) -> rbac_pb2.Principal:
        """A claim may be a string or a list of strings in the payload: match either."""
        sm = string_matcher(value)
        out = []
        for iss in self.issuers:
            out.append(self._jwt(iss, path, _string_value(sm)))
            out.append(self._jwt(iss, path, _list_value(sm)))
        return _p_or(out)

    def request_principal(self, value: str) -> rbac_pb2.Principal:
        """`iss/sub` (with `*` wildcards) split over the known issuers."""
        out: list[rbac_pb2.Principal] = []
        for iss in self.issuers:
            head = iss + "/"
            if value == "*":
                out.append(self._jwt(iss, ["iss"], _present()))
            elif value.startswith("*"):
                tail = value[1:]
                out.append(self._jwt(iss, ["sub"], _string_value(string_pb2.StringMatcher(suffix=tail))))
                # The suffix may reach back into "iss/": then sub is the rest, exactly.
                for k in range(1, len(tail) + 1):
                    if head.endswith(tail[:k]):
                        sm = string_pb2.StringMatcher(exact=tail[k:])
                        out.append(self._jwt(iss, ["sub"], _string_value(sm)))
            elif value.endswith("*"):
                lead = value[:-1]
                if lead.startswith(head) and len(lead) > len(head):
                    sm = string_pb2.StringMatcher(prefix=lead[len(head) :])
                    out.append(self._jwt(iss, ["sub"], _string_value(sm)))
                elif head.startswith(lead):
                    out.append(self._jwt(iss, ["iss"], _present()))
            elif value.startswith(head):
                sm = string_pb2.StringMatcher(exact=value[len(head) :])
                out.append(self._jwt(iss, ["sub"], _string_value(sm)))
        return _p_or(out)

    # permissions
    def permission(self, key: str, value: str) -> rbac_pb2.Permission:
        p = rbac_pb2.Permission()
        if key == "destination.ip":
            p.destination_ip.CopyFrom(_cidr(value))
        elif key == "destination.port":
            if not value.isdigit() or not 0 < int(value) < 65536:
                raise _Skip(f"{value!r} is not a port")
            p.destination_port = int(value)
        elif key == "connection.sni":
            p.requested_server_name.CopyFrom(string_matcher(value))
        elif key.startswith(_EXPERIMENTAL):
            m = re.fullmatch(r"experimental\.(envoy\.filters\.[\w.]+)\[([^\]]+)\]", key)
            if m is None:
                raise _Skip(f"bad key {key!r}: use experimental.envoy.filters.<filter>[<key>]")
            p.metadata.CopyFrom(_metadata(m.group(1), [m.group(2)], _list_value(string_matcher(value))))
        elif key == _HOST:
            self._http_only("hosts")
            p.header.CopyFrom(_host_header(value))
        elif key == _METHOD:
            self._http_only("methods")
            p.header.CopyFrom(rc.HeaderMatcher(name=_METHOD, string_match=string_pb2.StringMatcher(exact=value)))
        elif key == _PATH:
            self._http_only("paths")
            return _path_permission(value)
        else:
            raise _Skip(f"unknown key {key!r}")
        return p


Field = tuple[str, Sequence[str], Sequence[str]]  # (key, values, notValues)


def _is_permission_key(key: str) -> bool:
    return key in _PERMISSION_KEYS or key.startswith(_EXPERIMENTAL)


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
        (_HOST, op.hosts, op.not_hosts),
        (_PORT, op.ports, op.not_ports),
        (_METHOD, op.methods, op.not_methods),
        (_PATH, op.paths, op.not_paths),
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
                except _Skip:
                    if strict:
                        raise
        out.append(pair)
    return out


def _principal_of(fields: Sequence[Field], gen: _Generator, strict: bool) -> rbac_pb2.Principal:
    parts: list[rbac_pb2.Principal] = []
    for yes, no in _fields_to_matchers(fields, gen.principal, strict):
        if yes:
            parts.append(_p_or(yes))
        if no:
            parts.append(rbac_pb2.Principal(not_id=_p_or(no)))
    return _p_and(parts)


def _permission_of(fields: Sequence[Field], gen: _Generator, strict: bool) -> rbac_pb2.Permission:
    parts: list[rbac_pb2.Permission] = []
    for yes, no in _fields_to_matchers(fields, gen.permission, strict):
        if yes:
            parts.append(_m_or(yes))
        if no:
            parts.append(rbac_pb2.Permission(not_rule=_m_or(no)))
    return _m_and(parts)


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
    except _Skip:
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


# --- filters ----------------------------------------------------------------------------------


def _http_rbac(rules: rbac_pb2.RBAC, *, shadow: bool = False) -> hcm.HttpFilter:
    cfg = http_rbac_pb2.RBAC()
    if shadow:
        cfg.shadow_rules.CopyFrom(rules)
        cfg.shadow_rules_stat_prefix = ext_authz.SHADOW_STAT_PREFIX
    else:
        cfg.rules.CopyFrom(rules)
    f = hcm.HttpFilter(name=HTTP_RBAC_FILTER)
    f.typed_config.Pack(cfg)
    return f


def _net_rbac(rules: rbac_pb2.RBAC, *, shadow: bool = False) -> listener_components_pb2.Filter:
    cfg = net_rbac_pb2.RBAC(stat_prefix=TCP_STAT_PREFIX)
    if shadow:
        cfg.shadow_rules.CopyFrom(rules)
        cfg.shadow_rules_stat_prefix = ext_authz.SHADOW_STAT_PREFIX
    else:
        cfg.rules.CopyFrom(rules)
    f = listener_components_pb2.Filter(name=NETWORK_RBAC_FILTER)
    f.typed_config.Pack(cfg)
    return f


def _custom_provider(configs: Sequence[Config]) -> str | None:
    """The one provider CUSTOM policies on a workload use; None if they disagree
    (istiod allows one per workload and fails closed otherwise)."""
    specs: list[Any] = [c.spec for c in configs]
    names = {str(s.provider.name) for s in specs}
    return names.pop() if len(names) == 1 else None


@dataclass(frozen=True)
class _Stage:
    rbac: rbac_pb2.RBAC
    shadow: bool


def _working_provider(ctx: PushContext, configs: Sequence[Config], tcp: bool) -> tuple[str | None, bool]:
    """(provider to call, fail closed?) for the CUSTOM policies of a workload."""
    name = _custom_provider(configs)
    if name is None:
        return None, True
    try:
        if tcp:
            # istiod skips HTTP providers on TCP chains (neither enforced nor denied).
            return (name, False) if ext_authz.network_filter(ctx, name) is not None else (None, False)
        ext_authz.http_filter(ctx, name)
    except ext_authz.ExtAuthzError:
        return None, True
    return name, False


def _stages(ctx: PushContext, sel: Selected, tcp: bool) -> tuple[list[_Stage], str | None]:
    """RBAC stages in order (custom shadow, audit, deny, allow), and the CUSTOM
    provider to add an ext_authz filter for (None: no working CUSTOM)."""
    issuers = jwt.issuers(sel.request_authn)
    stages: list[_Stage] = []
    provider: str | None = None
    deny_extra: list[Config] = []
    if sel.custom:
        provider, fail_closed = _working_provider(ctx, sel.custom, tcp)
        if provider is not None:
            prefix = ext_authz.POLICY_PREFIX + "-"
            stages.append(_Stage(build_rbac(sel.custom, _ENVOY_DENY, CUSTOM, issuers, tcp, prefix), True))
        elif fail_closed:
            # The rules a broken CUSTOM policy would send to ext_authz are denied instead.
            deny_extra = list(sel.custom)
    if sel.audit:
        audit = build_rbac(sel.audit, _ENVOY_LOG, AUDIT, issuers, tcp)
        if audit.policies:
            stages.append(_Stage(audit, False))
    deny = build_rbac(deny_extra, _ENVOY_DENY, CUSTOM, issuers, tcp)
    for k, v in build_rbac(sel.deny, _ENVOY_DENY, DENY, issuers, tcp).policies.items():
        deny.policies[k].CopyFrom(v)
    if deny.policies:
        stages.append(_Stage(deny, False))
    if sel.allow:
        stages.append(_Stage(build_rbac(sel.allow, _ENVOY_ALLOW, ALLOW, issuers, tcp), False))
    return stages, provider


def http_filters(ctx: PushContext, proxy: Proxy) -> list[hcm.HttpFilter]:
    """jwt_authn, ext_authz (CUSTOM), RBAC audit/deny/allow, in istiod's order."""
    sel = select(ctx, proxy)
    if sel.empty:
        return []
    out: list[hcm.HttpFilter] = []
    jwt_filter = jwt.http_filter(ctx, sel.request_authn)
    if jwt_filter is not None:
        out.append(jwt_filter)
    stages, provider = _stages(ctx, sel, tcp=False)
    for i, st in enumerate(stages):
        out.append(_http_rbac(st.rbac, shadow=st.shadow))
        if st.shadow and provider is not None and i == 0:
            out.append(ext_authz.http_filter(ctx, provider))
    return out


def network_filters(ctx: PushContext, proxy: Proxy) -> list[listener_components_pb2.Filter]:
    sel = select(ctx, proxy)
    if not (sel.custom or sel.audit or sel.deny or sel.allow):
        return []
    out: list[listener_components_pb2.Filter] = []
    stages, provider = _stages(ctx, sel, tcp=True)
    for i, st in enumerate(stages):
        out.append(_net_rbac(st.rbac, shadow=st.shadow))
        if st.shadow and provider is not None and i == 0:
            f = ext_authz.network_filter(ctx, provider)
            if f is not None:
                out.append(f)
    return out


# --- hooks -------------------------------------------------------------------------------------


def _inbound_port_is_http(ctx: PushContext, proxy: Proxy, port: int) -> bool:
    from ..sidecar.listeners import inbound_ports

    for ing in inbound_ports(ctx, proxy, ctx.sidecar_scope(proxy)):
        if ing.port.number == port:
            return ing.port.protocol.is_http
    return False


@http_filter_feature
def authn_authz_http_filters(ctx: PushContext, proxy: Proxy, direction: str, port: int) -> list[hcm.HttpFilter]:
    if direction not in ("inbound", "gateway"):
        return []
    key = ("authz-http", proxy.namespace, proxy.labels_key)
    return ctx.cached(key, lambda: http_filters(ctx, proxy))


# istiod puts authentication and authorization before every other HTTP filter
# (cors, fault, ratelimit, ...), whatever order plugins.py imports modules in.
HTTP_FILTER_FEATURES.remove(authn_authz_http_filters)
HTTP_FILTER_FEATURES.insert(0, authn_authz_http_filters)


@network_filter_feature
def authz_network_filters(
    ctx: PushContext, proxy: Proxy, direction: str, port: int
) -> list[listener_components_pb2.Filter]:
    if direction != "inbound" or _inbound_port_is_http(ctx, proxy, port):
        return []
    key = ("authz-tcp", proxy.namespace, proxy.labels_key)
    return ctx.cached(key, lambda: network_filters(ctx, proxy))
