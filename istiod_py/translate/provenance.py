"""Provenance: which Istio configs each generated resource was built from.

One mechanism rather than edits in every builder: `PushContext` records, while
a value is built, the configs its lookups return (`note`: Sidecar scope,
DestinationRule, VirtualService; memoized lookups replay what they read), and
the translator attributes that read-set to each resource it builds (`traced`
around one resource, or a whole part's read-set as the part's default). The
EnvoyFilter pass adds the patches that changed a resource, with their field
path (`configPatches[i]`). Field paths of the other kinds are noted where the
translator picks a part of a config: a DestinationRule's `spec.trafficPolicy`
(`.portLevelSettings[j]`) and `spec.subsets[i]` for the cluster they shape, a
VirtualService's `spec.http[i]` for the routes it produced. Kept on `Part`
(cache/resources.py), never sent.
"""

from __future__ import annotations

from typing import Any

from istiod_py.config.model import Config
from istiod_py.model import Service

from .context import PushContext, ref_of


def service_ref(svc: Service) -> str:
    """`Service/ns/name` or `ServiceEntry/ns/name` from the registry's source text."""
    kind, _, ns_name = svc.source.partition(" ")
    if not ns_name:
        return f"Service/{svc.namespace}/{svc.hostname}"
    return f"{kind}/{ns_name}"


def note_service(ctx: PushContext, svc: Service) -> None:
    ctx.note(service_ref(svc))


def parse_ref(ref: str) -> tuple[str, str, str, str]:
    """(kind, namespace, name, field path) of a provenance reference."""
    head, _, path = ref.partition(":")
    kind, _, rest = head.partition("/")
    ns, _, name = rest.partition("/")
    return kind, ns, name, path


def config_ref(ref: str) -> str:
    """The config a reference names, without the field path."""
    return ref.partition(":")[0]


def note_destination_rule_fields(ctx: PushContext, dr: Config, port: int, subset: str) -> None:
    """The parts of `dr` that shape `outbound|port|subset|...`: its top-level
    trafficPolicy (and the portLevelSettings entry for the port) and the subset."""
    spec: Any = dr.spec
    if spec.HasField("traffic_policy"):
        ctx.note(ref_of(dr, "spec.trafficPolicy"))
        for j, pls in enumerate(spec.traffic_policy.port_level_settings):
            if pls.HasField("port") and pls.port.number == port:
                ctx.note(ref_of(dr, f"spec.trafficPolicy.portLevelSettings[{j}]"))
                break
    if subset:
        for i, s in enumerate(spec.subsets):
            if s.name == subset:
                ctx.note(ref_of(dr, f"spec.subsets[{i}]"))
                break


def note_http_route(ctx: PushContext, vs: Config, http: Any) -> None:
    """`spec.http[i]` of `vs` for the Envoy routes built from `http` (found by
    identity: a route merged in from a delegate VirtualService is not in `vs`)."""
    if not ctx.frames:
        return
    spec: Any = vs.spec
    for i, h in enumerate(spec.http):
        if h is http:
            ctx.note(ref_of(vs, f"spec.http[{i}]"))
            return
