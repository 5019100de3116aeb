"""ServiceEntry and WorkloadEntry: which fields istiod_py implements, and load-time rejection of the rest."""

from __future__ import annotations

from typing import Any

from istio.networking.v1alpha3 import service_entry_pb2 as se_pb

from .support import NOT_YET, REG, Problems, Support, T, _r, _reject, _s

MSG_NETWORK = f"{NOT_YET} (multi-network endpoints reached through network gateways); remove it"

SUPPORT: dict[str, Support] = {
    "ServiceEntry.hosts": _s(REG),
    "ServiceEntry.addresses": _s(f"{REG}, {T}sidecar/listeners.py, {T}sidecar/routes.py"),
    "ServiceEntry.ports": _s(REG),
    "ServiceEntry.location": _s(
        REG, "Service.mesh_external; auto mTLS follows the endpoints' security.istio.io/tlsMode label"
    ),
    "ServiceEntry.resolution": _s(f"{REG}, {T}clusters.py"),
    "ServiceEntry.endpoints": _s(REG),
    "ServiceEntry.workloadSelector": _s(REG, "selects WorkloadEntries (file mode has no pods)"),
    "ServiceEntry.exportTo": _s(f"{REG}, {T}scope.py"),
    "ServiceEntry.subjectAltNames": _s(f"{T}security/mtls.py (service_accounts)"),
    "ServicePort.number": _s(REG),
    "ServicePort.protocol": _s(REG),
    "ServicePort.name": _s(REG),
    "ServicePort.targetPort": _s(REG),
    "WorkloadEntry.address": _s(REG),
    "WorkloadEntry.ports": _s(REG),
    "WorkloadEntry.labels": _s(f"{REG}, {T}endpoints.py"),
    "WorkloadEntry.network": _r(MSG_NETWORK),
    "WorkloadEntry.locality": _s(f"{REG}, {T}endpoints.py, {T}traffic/lb_locality.py"),
    "WorkloadEntry.weight": _s(f"{REG}, {T}endpoints.py"),
    "WorkloadEntry.serviceAccount": _s(f"{REG}, {T}security/mtls.py"),
    "WorkloadSelector.labels": _s(f"{REG} (ServiceEntry), {T}scope.py (Sidecar)"),
}


def check_service_entry(se: se_pb.ServiceEntry, namespace: str = "") -> Problems:
    out: Problems = []
    for i, ep in enumerate(se.endpoints):
        _reject(ep, ("network",), f"spec.endpoints[{i}]", MSG_NETWORK, out)
    return out


def check_workload_entry(we: Any, namespace: str = "") -> Problems:
    out: Problems = []
    _reject(we, ("network",), "spec", MSG_NETWORK, out)
    return out
