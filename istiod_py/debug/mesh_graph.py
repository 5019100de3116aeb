"""The data behind the live mesh page (/debug/meshz): services, workloads,
connected proxies with their sync state, recent pushes and NACKs, and a graph of
who may call whom.

An edge A -> W (client workload A to workload W) exists when A's Sidecar scope
makes a service S visible to A (PushContext.sidecar_scope, as the translator
decides which clusters A gets) and S's routing as A sees it sends traffic to W:
the VirtualService PushContext.vs_for_host picks for S from A's namespace routes
to hosts and subsets (DestinationRule subset labels select W); without one, every
workload of S. Its state is what W's AuthorizationPolicies decide
for A's identity (spiffe principal from its service account, its namespace), by
Istio's order: a DENY rule matching A -> "deny"; ALLOW policies present and none
matching -> "deny"; otherwise "allow". A rule that matches A's identity but also
has `to`/`when` conditions or request-level sources (requestPrincipals, ipBlocks)
decides per request: "partial". CUSTOM policies are "partial" (an external
authorizer decides)."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from istiod_py.model.proxy import node_id, parse_proxy
from istiod_py.model.service import labels_match

if TYPE_CHECKING:
    from istiod_py.config.model import Config
    from istiod_py.model import MeshState, Proxy
    from istiod_py.translate.context import PushContext


@dataclass(frozen=True)
class Node:
    name: str
    namespace: str
    address: str
    labels: dict[str, str]
    service_account: str
    connected: bool = False
    services: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.name}.{self.namespace}"

    def proxy(self) -> Proxy:
        md = {"NAMESPACE": self.namespace, "LABELS": self.labels, "SERVICE_ACCOUNT": self.service_account,
              "WORKLOAD_NAME": self.name}  # fmt: skip
        return parse_proxy(node_id("sidecar", self.address or "127.0.0.1", self.name, self.namespace), md)


def nodes(state: MeshState, connected: list[Proxy]) -> list[Node]:
    by_id: dict[str, Node] = {}
    for we in state.of_kind("WorkloadEntry"):
        spec: Any = we.spec
        n = Node(we.meta.name, we.meta.namespace, spec.address, dict(spec.labels), spec.service_account or "default")
        by_id[n.id] = n
    for eps in state.endpoints.values():
        for e in eps:
            name = e.workload_name or e.address
            n = Node(name, e.namespace, e.address, dict(e.labels), e.service_account or "default")
            by_id.setdefault(n.id, n)
    for p in connected:
        old = by_id.get(p.id)
        labels = dict(p.labels) if p.labels else (old.labels if old else {})
        by_id[p.id] = Node(p.name, p.namespace, p.ip, labels, p.service_account, connected=True)
    out = []
    for n in by_id.values():
        svcs = sorted(
            host
            for host, svc in state.services.items()
            if any(e.address == n.address for e in state.endpoints.get(host, ()))
            or (svc.selector and svc.namespace == n.namespace and labels_match(svc.selector, n.labels))
        )
        out.append(Node(n.name, n.namespace, n.address, n.labels, n.service_account, n.connected, svcs))
    return sorted(out, key=lambda n: n.id)


# --- authorization ---------------------------------------------------------------------


def _glob(patterns: Any, value: str) -> bool:
    return any(p == "*" or fnmatch.fnmatchcase(value, p) for p in patterns)


def _source_match(src: Any, principal: str, namespace: str) -> tuple[bool, bool]:
    """(matches the identity, decided per request)."""
    if src.principals and not _glob(src.principals, principal):
        return False, False
    if src.not_principals and _glob(src.not_principals, principal):
        return False, False
    if src.namespaces and not _glob(src.namespaces, namespace):
        return False, False
    if src.not_namespaces and _glob(src.not_namespaces, namespace):
        return False, False
    per_request = bool(src.request_principals or src.not_request_principals or src.ip_blocks
                       or src.not_ip_blocks or src.remote_ip_blocks or src.not_remote_ip_blocks)  # fmt: skip
    return True, per_request


def _rule(rule: Any, principal: str, namespace: str) -> str:
    """ "full", "partial" or "none": does this rule match every request from the identity?"""
    per_request = bool(rule.to or rule.when)
    if rule.__getattribute__("from"):
        any_match = False
        for f in rule.__getattribute__("from"):
            ok, pr = _source_match(f.source, principal, namespace)
            if ok:
                any_match = True
                per_request = per_request or pr
                break
        if not any_match:
            return "none"
    return "partial" if per_request else "full"


def decide(policies: list[Config], principal: str, namespace: str) -> tuple[str, list[str]]:
    """The edge state and the policies that decided it."""
    from istiod_py.translate.security.rbac_rules import ALLOW, CUSTOM, DENY

    deny_partial: list[str] = []
    allows: list[Config] = []
    for cfg in policies:
        spec: Any = cfg.spec
        ref = f"{cfg.meta.namespace}/{cfg.meta.name}"
        action = int(spec.action)
        if action == CUSTOM:
            deny_partial.append(ref)
        elif action == DENY:
            results = [_rule(r, principal, namespace) for r in spec.rules]
            if "full" in results:
                return "deny", [ref]
            if "partial" in results:
                deny_partial.append(ref)
        elif action == ALLOW:
            allows.append(cfg)
    if allows:
        best, by = "none", []
        for cfg in allows:
            results = [_rule(r, principal, namespace) for r in cfg.spec.rules]  # type: ignore[attr-defined]
            if "full" in results:
                best, by = "full", [f"{cfg.meta.namespace}/{cfg.meta.name}"]
                break
            if "partial" in results and best == "none":
                best, by = "partial", [f"{cfg.meta.namespace}/{cfg.meta.name}"]
        if best == "none":
            return "deny", [f"{c.meta.namespace}/{c.meta.name}" for c in allows]
        if best == "partial" or deny_partial:
            return "partial", by + deny_partial
        return "allow", by
    if deny_partial:
        return "partial", deny_partial
    return "allow", []


def routed(ctx: PushContext, host: str, viewer_ns: str) -> tuple[str | None, list[tuple[str, dict[str, str] | None]]]:
    """Where traffic for `host` from `viewer_ns` goes: the VirtualService (if any) and
    its destinations as (host, subset labels or None for every workload)."""
    from istiod_py.translate.context import fqdn

    vs = ctx.vs_for_host(host, viewer_ns)
    if vs is None:
        return None, [(host, None)]
    spec: Any = vs.spec
    # A weight of 0 among several destinations sends nothing there.
    dests = [d.destination for kind in (spec.http, spec.tcp, spec.tls) for r in kind for d in r.route
             if d.weight or len(r.route) == 1]  # fmt: skip
    out: list[tuple[str, dict[str, str] | None]] = []
    for d in dests:
        h = fqdn(d.host, vs.meta.namespace, ctx.domain)
        labels: dict[str, str] | None = None
        if d.subset:
            dr = ctx.destination_rule(h, viewer_ns)
            subsets = {s.name: dict(s.labels) for s in dr.spec.subsets} if dr is not None else {}  # type: ignore[attr-defined]
            if d.subset not in subsets:
                continue  # an undefined subset sends nowhere (503 NC)
            labels = subsets[d.subset]
        out.append((h, labels))
    return f"{vs.meta.namespace}/{vs.meta.name}", out


def graph(state: MeshState, connected: list[Proxy]) -> dict[str, Any]:
    from istiod_py.translate.context import PushContext
    from istiod_py.translate.security.rbac import applies

    ns_nodes = nodes(state, connected)
    ctx = PushContext(state)
    root = state.mesh.root_namespace
    domain = state.mesh.trust_domain
    policies = list(state.of_kind("AuthorizationPolicy"))
    edges = []
    by_service: dict[str, list[Node]] = {}
    for n in ns_nodes:
        for s in n.services:
            by_service.setdefault(s, []).append(n)
    for a in ns_nodes:
        visible = {s.hostname for s in ctx.sidecar_scope(a.proxy()).services}
        principal = f"{domain}/ns/{a.namespace}/sa/{a.service_account}"
        seen: set[str] = set()
        for host in sorted(visible):
            vs, targets = routed(ctx, host, a.namespace)
            for dest_host, subset_labels in targets:
                for w in by_service.get(dest_host, []):
                    if w.id == a.id or w.id in seen:
                        continue
                    if subset_labels is not None and not labels_match(subset_labels, w.labels):
                        continue
                    seen.add(w.id)
                    wp = w.proxy()
                    applying = [p for p in policies if applies(p, wp, root)]
                    state_, by = decide(applying, principal, a.namespace)
                    edges.append({"from": a.id, "to": w.id, "service": host, "via": vs, "state": state_,
                                  "policies": by})  # fmt: skip
    return {
        "nodes": [
            {
                "id": n.id,
                "name": n.name,
                "namespace": n.namespace,
                "address": n.address,
                "labels": n.labels,
                "serviceAccount": n.service_account,
                "connected": n.connected,
                "services": n.services,
            }
            for n in ns_nodes
        ],
        "edges": edges,
    }
