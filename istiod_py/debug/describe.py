"""`describe workload|service`: what applies to a workload or service and what it produced.

Everything comes from the same code that programs the proxies, not a second
reading of the YAML: the DestinationRule is PushContext.destination_rule, the
VirtualServices are PushContext.vs_for_host, the mTLS mode is the PeerAuthentication
resolution translate/security uses, the AuthorizationPolicies are rbac.applies, and
the routes are the RDS the translator generates for the workload (or, for a
service, for a sidecar in its namespace). A route's origin is its
`filter_metadata.istio.config` (Istio's /apis/networking.istio.io/v1/namespaces/NS/
virtual-service/NAME) when the translator sets it, else the VirtualService that
PushContext.vs_for_host picked for the host."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google.protobuf import json_format

from istiod_py.model.proxy import node_id, parse_proxy
from istiod_py.model.service import labels_match

if TYPE_CHECKING:
    from istiod_py.config.model import Config
    from istiod_py.model import MeshState, Proxy, Service
    from istiod_py.translate.context import PushContext
    from istiod_py.translate.generate import Translator


class DescribeError(LookupError):
    pass


@dataclass(frozen=True)
class WorkloadRef:
    name: str
    namespace: str
    address: str
    labels: dict[str, str]
    service_account: str


def _split(name: str, default_ns: str) -> tuple[str, str]:
    if "/" in name:
        ns, _, n = name.partition("/")
        return n, ns
    if "." in name:
        n, _, ns = name.rpartition(".")
        return n, ns
    return name, default_ns


def find_workload(state: MeshState, name: str, namespace: str = "default") -> WorkloadRef:
    n, ns = _split(name, namespace)
    for we in state.of_kind("WorkloadEntry"):
        if we.meta.name == n and we.meta.namespace == ns:
            spec: Any = we.spec
            return WorkloadRef(n, ns, spec.address, dict(spec.labels), spec.service_account or "default")
    for eps in state.endpoints.values():
        for e in eps:
            if e.workload_name == n and (e.namespace or ns) == ns:
                return WorkloadRef(n, ns, e.address, dict(e.labels), e.service_account or "default")
    known = sorted({f"{we.meta.namespace}/{we.meta.name}" for we in state.of_kind("WorkloadEntry")})
    raise DescribeError(f"no workload {ns}/{n}; known WorkloadEntries: {', '.join(known) or 'none'}")


def find_service(state: MeshState, name: str, namespace: str = "default") -> Service:
    if name in state.services:
        return state.services[name]
    n, ns = _split(name, namespace) if "/" in name or name.count(".") == 1 else (name, namespace)
    for host, svc in state.services.items():
        if svc.namespace == ns and host.split(".", 1)[0] == n:
            return svc
    raise DescribeError(f"no service {ns}/{n}; known: {', '.join(sorted(state.services)) or 'none'}")


def _proxy(w: WorkloadRef) -> Proxy:
    md = {"NAMESPACE": w.namespace, "LABELS": w.labels, "SERVICE_ACCOUNT": w.service_account,
          "WORKLOAD_NAME": w.name, "INTERCEPTION_MODE": "REDIRECT"}  # fmt: skip
    return parse_proxy(node_id("sidecar", w.address or "127.0.0.1", w.name, w.namespace), md)


def _ref(cfg: Config | None) -> str | None:
    return f"{cfg.meta.namespace}/{cfg.meta.name}" if cfg is not None else None


def _enum(msg: Any, field: str) -> str:
    fd = msg.DESCRIPTOR.fields_by_name[field]
    v = fd.enum_type.values_by_number.get(getattr(msg, field))
    return v.name if v is not None else str(getattr(msg, field))


def _destination_rule(ctx: PushContext, host: str, viewer_ns: str, labels: dict[str, str] | None) -> Any:
    dr = ctx.destination_rule(host, viewer_ns)
    if dr is None:
        return None
    spec: Any = dr.spec
    out: dict[str, Any] = {"name": _ref(dr), "host": spec.host, "subsets": [s.name for s in spec.subsets]}
    if labels is not None:
        out["matchingSubsets"] = [s.name for s in spec.subsets if labels_match(dict(s.labels), labels)]
    if spec.HasField("traffic_policy") and spec.traffic_policy.HasField("tls"):
        out["tlsMode"] = _enum(spec.traffic_policy.tls, "mode")
    if spec.HasField("traffic_policy"):
        out["trafficPolicy"] = json_format.MessageToDict(spec.traffic_policy)
    return out


def _route_origin(route: dict[str, Any]) -> str | None:
    path = (((route.get("metadata") or {}).get("filterMetadata") or {}).get("istio") or {}).get("config")
    if not path:
        return None
    parts = str(path).strip("/").split("/")
    return f"{parts[-3]}/{parts[-1]}" if len(parts) >= 4 and parts[-4] == "namespaces" else str(path)


def _routes(translator: Translator, state: MeshState, proxy: Proxy, svc: Service) -> list[dict[str, Any]]:
    from istiod_py.xds.types import TypeUrl

    ctx = translator.context(state)
    vs = ctx.vs_for_host(svc.hostname, proxy.namespace)
    res = translator.generate(state, proxy, TypeUrl.ROUTE)
    out: list[dict[str, Any]] = []
    for name in sorted(res.index):
        rc = json_format.MessageToDict(res.index[name].message())
        for vh in rc.get("virtualHosts") or []:
            if not any(d == svc.hostname or d.startswith(svc.hostname + ":") for d in vh.get("domains", [])):
                continue
            for r in vh.get("routes") or []:
                action = r.get("route") or {}
                weighted = (action.get("weightedClusters") or {}).get("clusters", [])
                clusters = (
                    [action["cluster"]]
                    if "cluster" in action
                    else [f"{c['name']} ({c.get('weight', 0)}%)" for c in weighted]
                )
                origin = _route_origin(r)
                out.append(
                    {
                        "routeConfig": name,
                        "virtualHost": vh.get("name", ""),
                        "name": r.get("name", ""),
                        "match": r.get("match", {}),
                        "destination": clusters or [k for k in ("redirect", "directResponse") if k in r],
                        # From the route's istio.config metadata when present; else the VirtualService
                        # the translator picked for this host from this namespace.
                        "virtualService": origin or (_ref(vs) if r.get("name") != "default" else None),
                        "originFrom": "metadata" if origin else "lookup",
                    }
                )  # fmt: skip
    return out


def _authz(state: MeshState, proxy: Proxy) -> list[dict[str, str]]:
    from istiod_py.translate.security.rbac import applies

    out = []
    for cfg in state.of_kind("AuthorizationPolicy"):
        if applies(cfg, proxy, state.mesh.root_namespace):
            out.append({"name": _ref(cfg) or "", "action": _enum(cfg.spec, "action")})
    return out


def _peer_authn(state: MeshState, namespace: str, labels: dict[str, str], ports: list[int]) -> dict[str, Any]:
    from istiod_py.translate.security.peer_authentication import KIND, PeerAuthentications

    pa = PeerAuthentications(state.of_kind(KIND), state.mesh.root_namespace)
    eff = pa.for_workload(namespace, labels)
    applied: list[tuple[int, str | None]] = []
    root = state.mesh.root_namespace
    for cfg in state.of_kind(KIND):
        spec: Any = cfg.spec
        sel = dict(spec.selector.match_labels) if spec.HasField("selector") else {}
        ns_ok = cfg.meta.namespace == namespace or (cfg.meta.namespace == root and not sel)
        if ns_ok and labels_match(sel, labels):
            # Most specific first, the order the resolution consults them in.
            rank = 0 if sel else (1 if cfg.meta.namespace == namespace else 2)
            applied.append((rank, _ref(cfg)))
    return {
        "mode": eff.mode.name,
        "ports": {str(p): eff.for_port(p).name for p in ports},
        "applied": [ref for _, ref in sorted(applied)],
    }


def describe_workload(
    translator: Translator, state: MeshState, name: str, namespace: str = "default"
) -> dict[str, Any]:
    w = find_workload(state, name, namespace)
    proxy = _proxy(w)
    ctx = translator.context(state)
    services = []
    for svc in state.services.values():
        eps = [e for e in state.endpoints.get(svc.hostname, ()) if e.address == w.address]
        selected = svc.selector is not None and svc.namespace == w.namespace and labels_match(svc.selector, w.labels)
        if not eps and not selected:
            continue
        vs = ctx.vs_for_host(svc.hostname, w.namespace)
        services.append(
            {
                "service": svc.hostname,
                "ports": [{"name": p.name, "port": p.number, "protocol": p.protocol.value} for p in svc.ports],
                "destinationRule": _destination_rule(ctx, svc.hostname, w.namespace, w.labels),
                "virtualService": _ref(vs),
                "routes": _routes(translator, state, proxy, svc),
            }
        )
    ports = sorted({p["port"] for s in services for p in s["ports"]})
    sidecar = ctx.sidecar_scope(proxy).sidecar
    return {
        "workload": {
            "name": w.name,
            "namespace": w.namespace,
            "address": w.address,
            "labels": w.labels,
            "serviceAccount": w.service_account,
        },
        "sidecar": _ref(sidecar),
        "services": sorted(services, key=lambda s: s["service"]),
        "peerAuthentication": _peer_authn(state, w.namespace, w.labels, ports),
        "authorizationPolicies": _authz(state, proxy),
    }


def describe_service(translator: Translator, state: MeshState, name: str, namespace: str = "default") -> dict[str, Any]:
    svc = find_service(state, name, namespace)
    ctx = translator.context(state)
    client = _proxy(WorkloadRef("describe-client", svc.namespace, "127.0.0.1", {}, "default"))
    workloads = []
    for e in state.endpoints.get(svc.hostname, ()):
        labels = dict(e.labels)
        proxy = _proxy(WorkloadRef(e.workload_name or e.address, e.namespace or svc.namespace, e.address, labels,
                                   e.service_account or "default"))  # fmt: skip
        workloads.append(
            {
                "name": e.workload_name or e.address,
                "address": f"{e.address}:{e.port}",
                "labels": labels,
                "peerAuthentication": _peer_authn(state, proxy.namespace, labels, [e.port]),
                "authorizationPolicies": _authz(state, proxy),
            }
        )
    vs = ctx.vs_for_host(svc.hostname, svc.namespace)
    return {
        "service": svc.hostname,
        "namespace": svc.namespace,
        "ports": [{"name": p.name, "port": p.number, "protocol": p.protocol.value} for p in svc.ports],
        "destinationRule": _destination_rule(ctx, svc.hostname, svc.namespace, None),
        "virtualService": _ref(vs),
        "routes": _routes(translator, state, client, svc),
        "workloads": workloads,
    }


def text(report: dict[str, Any]) -> str:
    """istioctl x describe's plain layout."""
    lines: list[str] = []

    def dr_lines(dr: Any) -> None:
        if not dr:
            return
        lines.append(f'DestinationRule: {dr["name"]} for "{dr["host"]}"')
        if "matchingSubsets" in dr:
            lines.append(f"   Matching subsets: {','.join(dr['matchingSubsets']) or '(none)'}")
            rest = [s for s in dr["subsets"] if s not in dr["matchingSubsets"]]
            if rest:
                lines.append(f"      (Non-matching subsets {','.join(rest)})")
        elif dr["subsets"]:
            lines.append(f"   Subsets: {','.join(dr['subsets'])}")
        lines.append(f"   Traffic Policy TLS Mode: {dr.get('tlsMode', '(unset)')}")

    def route_lines(routes: list[dict[str, Any]], vs: str | None) -> None:
        if vs:
            lines.append(f"VirtualService: {vs}")
        for r in routes:
            match = ", ".join(f"{k}={v}" for k, v in r["match"].items()) or "*"
            lines.append(f"   Route {r['name'] or '(unnamed)'} [{match}] -> {', '.join(map(str, r['destination']))}"
                         f"   (from {r['virtualService'] or 'default route'})")  # fmt: skip

    def security_lines(pa: dict[str, Any], authz: list[dict[str, str]]) -> None:
        lines.append(f"Effective PeerAuthentication: workload mTLS mode {pa['mode']}"
                     + "".join(f", port {p}: {m}" for p, m in pa["ports"].items() if m != pa["mode"]))  # fmt: skip
        if pa["applied"]:
            lines.append(f"Applied PeerAuthentication: {', '.join(pa['applied'])}")
        if authz:
            lines.append(
                "Applicable AuthorizationPolicies: " + ", ".join(f"{a['name']} ({a['action']})" for a in authz)
            )
        else:
            lines.append("Applicable AuthorizationPolicies: none (every request allowed)")

    if "workload" in report:
        w = report["workload"]
        lines.append(f"Workload: {w['namespace']}/{w['name']} ({w['address']})")
        lines.append(f"   Labels: {', '.join(f'{k}={v}' for k, v in sorted(w['labels'].items()))}")
        lines.append(f"   Service account: {w['serviceAccount']}; Sidecar: {report['sidecar'] or '(default)'}")
        for s in report["services"]:
            lines.append("--------------------")
            ports = ", ".join(f"{p['name']} {p['port']}/{p['protocol']}" for p in s["ports"])
            lines.append(f"Service: {s['service']}")
            lines.append(f"   Ports: {ports}")
            dr_lines(s["destinationRule"])
            route_lines(s["routes"], s["virtualService"])
        lines.append("--------------------")
        security_lines(report["peerAuthentication"], report["authorizationPolicies"])
    else:
        ports = ", ".join(f"{p['name']} {p['port']}/{p['protocol']}" for p in report["ports"])
        lines.append(f"Service: {report['service']}")
        lines.append(f"   Ports: {ports}")
        dr_lines(report["destinationRule"])
        route_lines(report["routes"], report["virtualService"])
        for w in report["workloads"]:
            lines.append("--------------------")
            lines.append(f"Workload: {w['name']} ({w['address']})")
            security_lines(w["peerAuthentication"], w["authorizationPolicies"])
    return "\n".join(lines) + "\n"
