"""Provenance: which Istio configs each generated resource was built from.

One mechanism rather than edits in every builder: `PushContext` records, while
a value is built, the configs its lookups return (`note`: Sidecar scope,
DestinationRule, VirtualService; memoized lookups replay what they read), and
the translator attributes that read-set to each resource it builds (`traced`
around one resource, or a whole part's read-set as the part's default). The
EnvoyFilter pass adds the patches that changed a resource, with their field
path (`configPatches[i]`). Kept on `Part` (cache/resources.py), never sent.
"""

from __future__ import annotations

from istiod_py.model import Service

from .context import PushContext


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
