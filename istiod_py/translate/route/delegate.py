"""VirtualService delegation (`http[].delegate`), merged as istiod merges it
(pilot/pkg/model/virtualservice.go, mergeVirtualServicesIfNeeded).

A root VirtualService (one with hosts) may replace an HTTP route's action with
`delegate: {name, namespace}`; the delegate VirtualService has no hosts and only
takes effect through a root. Each of the delegate's HTTP routes becomes one route
of the root, in the delegate's order, at the place of the delegating route:

- matches: with no match on the root route the delegate's are used as they are,
  with none on the delegate route the root's; otherwise every delegate match
  must be a subset of at least one root match (a uri/scheme/method/authority,
  header, withoutHeader or queryParam the root also matches on must be the same
  exact value or, under a root prefix, a longer prefix or an exact value
  starting with it; regex only where the other side does not set it;
  ignoreUriCase equal; port, sourceNamespace, sourceLabels and gateways not
  contradicting the root's) and is merged with each root match it fits: the
  delegate's conditions win, the root's fill in the rest, names join
  `root-delegate`. A delegate route with a match that fits no root match is
  dropped (and reported by analysis);
- the delegate route's name, rewrite, directResponse, timeout, retries, fault,
  mirror(s), mirrorPercentage, corsPolicy and headers apply; the root route's
  fill in the ones the delegate route leaves unset;
- one level only: a delegate's routes cannot delegate again (validation rejects
  it; translation drops such a route);
- a missing delegate, a "delegate" that has hosts (a normal VirtualService), or
  one whose exportTo does not include the root's namespace contributes no
  routes (the delegating route is dropped, so its requests fall through to
  later routes, else 404), as in istiod.

Short names resolve against the namespace of the resource that wrote them
(destinations and mirrors of a delegate in its own namespace, inherited root
fields in the root's), as istiod resolves every VirtualService before merging.

Resolution is pure: `expand(root, index, domain)` returns the root's HTTP routes
with delegation applied and what was dropped; `http_routes(ctx, vs)` memoizes it
per state (a delegate edit is a VirtualService change, so RDS is rebuilt).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from istio.networking.v1alpha3 import virtual_service_pb2 as vs_pb

from istiod_py.config.model import Config

from ..scope import exported_to

if TYPE_CHECKING:
    from ..context import PushContext

REFERENCED_NOT_FOUND = "IST0101 ReferencedResourceNotFound"
DELEGATE_NOT_APPLIED = "ISTPY0002 DelegateNotApplied"

_STRING_MATCH_FIELDS = ("uri", "scheme", "method", "authority")
_MAP_MATCH_FIELDS = ("headers", "without_headers", "query_params")
# HTTPRoute fields a delegate route inherits from the root route when it leaves them unset.
_INHERITED = (
    "rewrite",
    "direct_response",
    "timeout",
    "retries",
    "fault",
    "mirror",
    "mirror_percent",
    "mirror_percentage",
    "cors_policy",
    "headers",
)

Index = Mapping[tuple[str, str], Config]


@dataclass(frozen=True, slots=True)
class Issue:
    """Why (part of) a delegation does not apply; analysis reports it as a warning."""

    config: Config  # the resource the warning is located on
    path: str
    message: str


@dataclass(frozen=True, slots=True)
class Expansion:
    routes: tuple[vs_pb.HTTPRoute, ...]
    issues: tuple[Issue, ...]


def is_delegate(spec: Any) -> bool:
    """A VirtualService without hosts is a delegate: used only through a root."""
    return not spec.hosts


def is_root(spec: Any) -> bool:
    return any(r.HasField("delegate") for r in spec.http)


def index_of(configs: Iterable[Config]) -> dict[tuple[str, str], Config]:
    return {(c.meta.namespace, c.meta.name): c for c in configs if c.meta.kind == "VirtualService"}


# --- names ----------------------------------------------------------------------------------


def _fqdn(host: str, namespace: str, domain: str) -> str:
    # translate/context.fqdn, repeated here so this module imports nothing heavier than scope.
    if "." in host or host == "*" or host.startswith("*"):
        return host
    return f"{host}.{namespace}.svc.{domain}"


def _gateway(name: str, namespace: str) -> str:
    if name == "mesh":
        return name
    if name.startswith("./"):
        return f"{namespace}/{name[2:]}"
    return name if "/" in name else f"{namespace}/{name}"


def qualified(route: vs_pb.HTTPRoute, namespace: str, domain: str) -> vs_pb.HTTPRoute:
    """A copy of `route` with destination/mirror hosts and match gateways made
    independent of the namespace it was written in (istiod's shortname resolution)."""
    out = vs_pb.HTTPRoute()
    out.CopyFrom(route)
    for d in out.route:
        if d.HasField("destination"):
            d.destination.host = _fqdn(d.destination.host, namespace, domain)
    if out.HasField("mirror"):
        out.mirror.host = _fqdn(out.mirror.host, namespace, domain)
    for mp in out.mirrors:
        if mp.HasField("destination"):
            mp.destination.host = _fqdn(mp.destination.host, namespace, domain)
    for m in out.match:
        gws = [_gateway(g, namespace) for g in m.gateways]
        del m.gateways[:]
        m.gateways.extend(gws)
    return out


# --- match merging --------------------------------------------------------------------------


def _kind_value(sm: vs_pb.StringMatch, kind: str) -> str:
    return str(getattr(sm, kind)) if sm.WhichOneof("match_type") == kind else ""


def string_match_conflict(root: vs_pb.StringMatch | None, leaf: vs_pb.StringMatch | None) -> bool:
    """Whether `leaf` can not be a narrowing of `root` (istiod's stringMatchConflict)."""
    if root is None or leaf is None:
        return False
    r_exact, r_prefix, r_regex = (_kind_value(root, k) for k in ("exact", "prefix", "regex"))
    l_exact, l_prefix, l_regex = (_kind_value(leaf, k) for k in ("exact", "prefix", "regex"))
    if r_regex and (l_regex or l_prefix or l_exact):
        return True
    if l_regex and (r_regex or r_prefix or r_exact):
        return True
    if r_exact:
        return bool(l_prefix) or l_exact != r_exact
    if r_prefix:
        if l_prefix:
            return not l_prefix.startswith(r_prefix)
        if l_exact:
            return not l_exact.startswith(r_prefix)
    return True


def _field(m: vs_pb.HTTPMatchRequest, name: str) -> vs_pb.StringMatch | None:
    return getattr(m, name) if m.HasField(name) else None


def has_conflict(root: vs_pb.HTTPMatchRequest, leaf: vs_pb.HTTPMatchRequest) -> bool:
    """Whether the delegate match `leaf` is not a subset of the root match (istiod's hasConflict)."""
    for name in _STRING_MATCH_FIELDS:
        if string_match_conflict(_field(root, name), _field(leaf, name)):
            return True
    for name in _MAP_MATCH_FIELDS:
        root_map, leaf_map = getattr(root, name), getattr(leaf, name)
        for key, value in leaf_map.items():
            if string_match_conflict(root_map.get(key), value):
                return True
    if root.ignore_uri_case != leaf.ignore_uri_case:
        return True
    if root.port and leaf.port and root.port != leaf.port:
        return True
    if root.source_namespace and leaf.source_namespace != root.source_namespace:
        return True
    for key, value in leaf.source_labels.items():
        if key in root.source_labels and root.source_labels[key] != value:
            return True
    # Gateways: the root's must include the delegate's.
    return bool(root.gateways and leaf.gateways and not set(leaf.gateways) <= set(root.gateways))


def _join(root: str, leaf: str) -> str:
    if not leaf:
        return root
    return f"{root}-{leaf}" if root else leaf


def merge_match(root: vs_pb.HTTPMatchRequest, leaf: vs_pb.HTTPMatchRequest) -> vs_pb.HTTPMatchRequest:
    """The delegate's conditions, with the root's filling in what it leaves unset."""
    out = vs_pb.HTTPMatchRequest()
    out.CopyFrom(leaf)
    out.name = _join(root.name, leaf.name)
    for name in _STRING_MATCH_FIELDS:
        if not out.HasField(name) and root.HasField(name):
            getattr(out, name).CopyFrom(getattr(root, name))
    for name in _MAP_MATCH_FIELDS:
        merged = getattr(out, name)
        merged.clear()
        for src in (getattr(root, name), getattr(leaf, name)):
            for key, value in src.items():
                merged[key].CopyFrom(value)
    if not out.port:
        out.port = root.port
    out.source_labels.clear()
    out.source_labels.update(dict(root.source_labels))
    out.source_labels.update(dict(leaf.source_labels))
    if not out.source_namespace:
        out.source_namespace = root.source_namespace
    if not out.gateways:
        out.gateways.extend(root.gateways)
    if not out.stat_prefix:
        out.stat_prefix = root.stat_prefix
    return out


def merge_matches(
    root: Iterable[vs_pb.HTTPMatchRequest], leaf: Iterable[vs_pb.HTTPMatchRequest]
) -> list[vs_pb.HTTPMatchRequest] | None:
    """Merged matches, or None on a conflict (a delegate match that fits no root match)."""
    roots, leaves = list(root), list(leaf)
    if not roots:
        return leaves
    if not leaves:
        return roots
    out: list[vs_pb.HTTPMatchRequest] = []
    for sub in leaves:
        fits = [merge_match(r, sub) for r in roots if not has_conflict(r, sub)]
        if not fits:
            return None
        out += fits
    return out or None


def merge_route(root: vs_pb.HTTPRoute, leaf: vs_pb.HTTPRoute) -> vs_pb.HTTPRoute | None:
    """One delegate route under the root route; None when its matches conflict."""
    matches = merge_matches(root.match, leaf.match)
    if matches is None:
        return None
    out = vs_pb.HTTPRoute()
    out.CopyFrom(leaf)
    del out.match[:]
    out.match.extend(matches)
    out.name = _join(root.name, leaf.name)
    for name in _INHERITED:
        if not out.HasField(name) and root.HasField(name):
            getattr(out, name).CopyFrom(getattr(root, name))
    if not out.mirrors:
        out.mirrors.extend(root.mirrors)
    return out


# --- roots ----------------------------------------------------------------------------------


def _ref(cfg: Config) -> str:
    return f"{cfg.meta.namespace}/{cfg.meta.name}"


def expand(root: Config, index: Index, domain: str) -> Expansion:
    """The root's HTTP routes with each delegating route replaced by the merged
    routes of its delegate (a VirtualService without delegation is returned as is)."""
    spec: Any = root.spec
    root_ns = root.meta.namespace
    routes: list[vs_pb.HTTPRoute] = []
    issues: list[Issue] = []
    for i, http in enumerate(spec.http):
        if not http.HasField("delegate"):
            routes.append(http)
            continue
        ref = http.delegate
        ns = ref.namespace or root_ns
        path = f"spec.http[{i}].delegate"
        target = index.get((ns, ref.name))
        if target is None:
            msg = f'{REFERENCED_NOT_FOUND}: Referenced virtualservice not found: "{ns}/{ref.name}"'
            issues.append(Issue(root, path, msg))
            continue
        tspec: Any = target.spec
        if not is_delegate(tspec):
            msg = (
                f"{DELEGATE_NOT_APPLIED}: VirtualService {ns}/{ref.name} has hosts, so it is not a delegate "
                "(a delegate VirtualService has no hosts); this route is dropped"
            )
            issues.append(Issue(root, path, msg))
            continue
        if not exported_to(tspec.export_to, ns, root_ns):
            msg = (
                f"{DELEGATE_NOT_APPLIED}: delegate VirtualService {ns}/{ref.name} is not exported to "
                f"namespace {root_ns}; this route is dropped (add {root_ns} to its exportTo)"
            )
            issues.append(Issue(root, path, msg))
            continue
        base = qualified(http, root_ns, domain)
        base.ClearField("delegate")
        for j, sub in enumerate(tspec.http):
            sub_path = f"spec.http[{j}]"
            if sub.HasField("delegate"):
                msg = (
                    f"{DELEGATE_NOT_APPLIED}: a delegate's route cannot delegate again (one level only); "
                    f"not used under {_ref(root)}"
                )
                issues.append(Issue(target, f"{sub_path}.delegate", msg))
                continue
            merged = merge_route(base, qualified(sub, ns, domain))
            if merged is None:
                msg = (
                    f"{DELEGATE_NOT_APPLIED}: no match of this route is a subset of a match of "
                    f"{_ref(root)} spec.http[{i}] (a delegate can only narrow its root's matches); "
                    "the route is dropped under that root"
                )
                issues.append(Issue(target, f"{sub_path}.match", msg))
                continue
            routes.append(merged)
    return Expansion(tuple(routes), tuple(issues))


def issues(configs: Iterable[Config], domain: str) -> list[Issue]:
    """Every problem delegation has in `configs` (for analysis)."""
    configs = [c for c in configs if c.meta.kind == "VirtualService"]
    index = index_of(configs)
    out: list[Issue] = []
    for cfg in configs:
        spec: Any = cfg.spec
        if not is_delegate(spec) and is_root(spec):
            out += expand(cfg, index, domain).issues
    return out


def http_routes(ctx: PushContext, vs: Config) -> tuple[vs_pb.HTTPRoute, ...]:
    """The HTTP routes a VirtualService contributes, delegation applied (memoized per state)."""
    spec: Any = vs.spec
    if not is_root(spec):
        return tuple(spec.http)

    def build() -> tuple[vs_pb.HTTPRoute, ...]:
        index = ctx.cached(("vs-index",), lambda: index_of(ctx.state.of_kind("VirtualService")))
        return expand(vs, index, ctx.domain).routes

    return ctx.cached(("vs-delegated", vs.meta.namespace, vs.meta.name), build)
