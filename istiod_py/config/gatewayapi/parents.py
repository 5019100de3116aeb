"""Route parentRefs: which Gateway listeners (or, for GAMMA, which Service) a route
attaches to, and the route's Accepted condition per parentRef."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import status as S
from .gateways import ListenerInfo
from .refs import DOMAIN, GROUP, Registry


@dataclass(frozen=True)
class MeshParent:
    """An HTTPRoute/GRPCRoute/TCPRoute/TLSRoute bound to a Service: routes for callers of that Service."""

    host: str
    port: int  # 0: every port of the Service
    namespace: str  # the Service's


@dataclass
class Attached:
    ref_index: int
    listeners: list[ListenerInfo]
    mesh: MeshParent | None
    status: S.ParentStatus


def host_matches(pattern: str, host: str) -> bool:
    if pattern in ("", "*"):
        return True
    if pattern.startswith("*."):
        return (host.endswith(pattern[1:]) and len(host) > len(pattern) - 1) or host == pattern
    return host == pattern


def hosts_intersect(a: str, b: str) -> bool:
    return host_matches(a, b) or host_matches(b, a)


def ref_dict(ref: Any, route_ns: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "group": ref.group if ref.HasField("group") else GROUP,
        "kind": ref.kind or "Gateway",
        "name": ref.name,
        "namespace": ref.namespace or route_ns,
    }
    if ref.section_name:
        out["sectionName"] = ref.section_name
    if ref.HasField("port"):
        out["port"] = ref.port
    return out


def _is_service(ref: Any) -> bool:
    # Istio's samples write `kind: Service` without `group: ""`; istiod accepts both.
    return ref.kind == "Service" and (not ref.HasField("group") or ref.group in ("", "core"))


def attach(
    route_kind: str,
    route_ns: str,
    parent_refs: Sequence[Any],
    hostnames: Sequence[str],
    listeners: Mapping[tuple[str, str], list[ListenerInfo]],
    reg: Registry,
) -> list[Attached]:
    out = []
    for i, ref in enumerate(parent_refs):
        ps = S.ParentStatus(ref_dict(ref, route_ns))
        ns = ref.namespace or route_ns
        if _is_service(ref):
            if not reg.service_exists(ns, ref.name):
                ps.conditions.append(
                    S.Condition(S.ACCEPTED, False, S.R_NO_MATCHING_PARENT, f"Service {ns}/{ref.name} not found")
                )
                out.append(Attached(i, [], None, ps))
                continue
            if route_kind in ("TCPRoute", "TLSRoute"):
                ps.conditions.append(
                    S.Condition(
                        S.ACCEPTED,
                        False,
                        S.R_UNSUPPORTED_VALUE,
                        f"{route_kind} with a Service parent (mesh) is not supported by istiod_py yet",
                    )
                )
                out.append(Attached(i, [], None, ps))
                continue
            mesh = MeshParent(f"{ref.name}.{ns}.svc.{DOMAIN}", ref.port if ref.HasField("port") else 0, ns)
            ps.conditions.append(S.Condition(S.ACCEPTED, True, S.R_ACCEPTED, "Route was valid"))
            out.append(Attached(i, [], mesh, ps))
            continue
        group = ref.group if ref.HasField("group") else GROUP
        if group != GROUP or (ref.kind or "Gateway") != "Gateway":
            ps.conditions.append(
                S.Condition(S.ACCEPTED, False, S.R_NO_MATCHING_PARENT, f"unsupported parentRef {group}/{ref.kind}")
            )
            out.append(Attached(i, [], None, ps))
            continue
        candidates = listeners.get((ns, ref.name))
        if candidates is None:
            ps.conditions.append(
                S.Condition(
                    S.ACCEPTED,
                    False,
                    S.R_NO_MATCHING_PARENT,
                    f"Gateway {ns}/{ref.name} not found (or not of an istio.io/gateway-controller class)",
                )
            )
            out.append(Attached(i, [], None, ps))
            continue
        picked = [li for li in candidates if (not ref.section_name or li.listener.name == ref.section_name)]
        picked = [li for li in picked if not ref.HasField("port") or li.listener.port == ref.port]
        if not picked:
            what = f"sectionName {ref.section_name!r}" if ref.section_name else f"port {ref.port}"
            ps.conditions.append(
                S.Condition(
                    S.ACCEPTED, False, S.R_NO_MATCHING_PARENT, f"no listener of Gateway {ns}/{ref.name} matches {what}"
                )
            )
            out.append(Attached(i, [], None, ps))
            continue
        allowed = [
            li
            for li in picked
            if route_kind in li.allowed_kinds and ("*" in li.allowed_namespaces or route_ns in li.allowed_namespaces)
        ]
        if not allowed:
            ps.conditions.append(
                S.Condition(
                    S.ACCEPTED,
                    False,
                    S.R_NOT_ALLOWED_BY_LISTENERS,
                    f"no listener of Gateway {ns}/{ref.name} allows a {route_kind} from namespace {route_ns!r}",
                )
            )
            out.append(Attached(i, [], None, ps))
            continue
        hosts = list(hostnames) or ["*"]
        matching = [li for li in allowed if any(hosts_intersect(li.hostname, h) for h in hosts)]
        if not matching:
            ps.conditions.append(
                S.Condition(
                    S.ACCEPTED,
                    False,
                    S.R_NO_MATCHING_LISTENER_HOSTNAME,
                    f"no hostnames matched parent hostname {allowed[0].hostname!r}",
                )
            )
            out.append(Attached(i, [], None, ps))
            continue
        for li in matching:
            li.status.attached_routes += 1
        ps.conditions.append(S.Condition(S.ACCEPTED, True, S.R_ACCEPTED, "Route was valid"))
        out.append(Attached(i, matching, None, ps))
    return out
