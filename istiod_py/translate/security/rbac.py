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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from envoy.config.listener.v3 import listener_components_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as net_rbac_pb2

from istiod_py.model import labels_match

from ..features import HTTP_FILTER_FEATURES, http_filter_feature, network_filter_feature
from . import ext_authz, jwt
from .rbac_rules import ALLOW, AUDIT, CUSTOM, DENY, build_rbac

if TYPE_CHECKING:
    from istiod_py.config.model import Config
    from istiod_py.model import Proxy

    from ..context import PushContext

HTTP_RBAC_FILTER = "envoy.filters.http.rbac"
NETWORK_RBAC_FILTER = "envoy.filters.network.rbac"
TCP_STAT_PREFIX = "tcp."

# envoy.config.rbac.v3.RBAC.Action
_ENVOY_ALLOW, _ENVOY_DENY, _ENVOY_LOG = 0, 1, 2

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
