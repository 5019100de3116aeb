"""The per-kind tables merged: what the walker, the doc and validation read.

A new kind adds its module (SUPPORT, check, optionally ignored) and one line in
each table below."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import destinationrule, gateway, serviceentry, sidecar, virtualservice
from .support import Problems, Support


def _merge(*tables: dict[str, Support]) -> dict[str, Support]:
    merged: dict[str, Support] = {}
    for table in tables:
        twice = merged.keys() & table.keys()
        assert not twice, f"field support listed twice: {sorted(twice)}"
        merged.update(table)
    return merged


SUPPORT: dict[str, Support] = _merge(
    virtualservice.SUPPORT,
    destinationrule.SUPPORT,
    gateway.SUPPORT,
    serviceentry.SUPPORT,
    sidecar.SUPPORT,
)

# Where the same message means different things in different places.
PATH_SUPPORT: dict[str, Support] = {**sidecar.PATH_SUPPORT}

DOC_KINDS = ("VirtualService", "DestinationRule", "Gateway", "ServiceEntry", "Sidecar")

CHECKS: dict[str, Callable[[Any, str], Problems]] = {
    "VirtualService": virtualservice.check_virtual_service,
    "DestinationRule": destinationrule.check_destination_rule,
    "Gateway": gateway.check_gateway,
    "ServiceEntry": serviceentry.check_service_entry,
    "WorkloadEntry": serviceentry.check_workload_entry,
    "Sidecar": sidecar.check_sidecar,
}

IGNORED: dict[str, Callable[[Any], Problems]] = {
    "VirtualService": virtualservice.ignored,
    "Gateway": gateway.ignored,
    "Sidecar": sidecar.ignored,
}
