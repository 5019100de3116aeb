"""Pods as service discovery needs them, and the join of EndpointSlice endpoints
with their Pods (as istiod builds endpoints: labels for subsets, the service
account for SANs and auto-mTLS, the tlsMode label, the Node's locality)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    ips: tuple[str, ...]
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    service_account: str = "default"
    node_name: str = ""
    # region/zone/subzone from the Node's topology labels (or the pod's istio-locality label)
    locality: str = ""
    ready: bool = False
    # The owning workload as istiod names it (Deployment for a ReplicaSet's Pods); "" -> the Pod name
    workload_name: str = ""


class PodIndex:
    """Pods by (namespace, name) and by (namespace, IP). A Pod that shares an IP
    with another (host network) is found by name through the endpoint's targetRef."""

    def __init__(self, pods: Iterable[PodInfo] = ()) -> None:
        self.by_name: dict[tuple[str, str], PodInfo] = {}
        self.by_ip: dict[tuple[str, str], PodInfo] = {}
        self.by_namespace: dict[str, list[PodInfo]] = {}
        for p in pods:
            self.by_name[(p.namespace, p.name)] = p
            self.by_namespace.setdefault(p.namespace, []).append(p)
            for ip in p.ips:
                self.by_ip.setdefault((p.namespace, ip), p)

    def in_namespace(self, namespace: str) -> list[PodInfo]:
        return self.by_namespace.get(namespace, [])

    def __bool__(self) -> bool:
        return bool(self.by_name)

    def find(self, namespace: str, address: str, target_pod: str = "") -> PodInfo | None:
        if target_pod:
            pod = self.by_name.get((namespace, target_pod))
            if pod is not None:
                return pod
        return self.by_ip.get((namespace, address))


EMPTY_INDEX = PodIndex()
