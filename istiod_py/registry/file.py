"""Service discovery from configuration: ServiceEntry (+ WorkloadEntry), and
Kubernetes Service + EndpointSlice documents, into Services and Endpoints."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from istiod_py.config.kube_types import EndpointSlice, KubeService
from istiod_py.config.model import Config
from istiod_py.model import Endpoint, Port, Resolution, Service, labels_match, protocol_from

from .pods import EMPTY_INDEX, PodIndex, PodInfo

TLS_MODE_LABEL = "security.istio.io/tlsMode"
_RESOLUTIONS = {0: Resolution.NONE, 1: Resolution.STATIC, 2: Resolution.DNS, 3: Resolution.DNS_ROUND_ROBIN}


@dataclass
class Registry:
    services: dict[str, Service] = field(default_factory=dict)
    endpoints: dict[str, list[Endpoint]] = field(default_factory=dict)

    def add_service(self, svc: Service) -> None:
        # First definition wins (sorted input: deterministic), as istiod keeps the oldest.
        self.services.setdefault(svc.hostname, svc)

    def add_endpoint(self, ep: Endpoint) -> None:
        self.endpoints.setdefault(ep.service, []).append(ep)

    def merge(self, other: Registry) -> None:
        for svc in other.services.values():
            self.add_service(svc)
        for eps in other.endpoints.values():
            for ep in eps:
                self.add_endpoint(ep)


class ConversionCache:
    """Conversions of unchanged inputs, reused across builds.

    The file source hands back the very same parsed objects for files that did
    not change, so a conversion keyed by the identity of its inputs (verified
    with `is`, never by a recycled id alone) is reused; an edit to one file
    reconverts only what that file defines."""

    def __init__(self) -> None:
        self._entries: dict[tuple[int, ...], tuple[tuple[object, ...], Registry]] = {}
        self._next: dict[tuple[int, ...], tuple[tuple[object, ...], Registry]] = {}

    def get(self, inputs: tuple[object, ...], build: Any) -> Registry:
        key = tuple(id(o) for o in inputs)
        hit = self._entries.get(key)
        if hit is not None and len(hit[0]) == len(inputs) and all(a is b for a, b in zip(hit[0], inputs, strict=True)):
            self._next[key] = hit
            return hit[1]
        reg = Registry()
        build(reg)
        self._next[key] = (inputs, reg)
        return reg

    def end_build(self) -> None:
        """Keep only what the last build used."""
        self._entries, self._next = self._next, {}


def workload_entry_tls_mode(labels: Mapping[str, str], service_account: str) -> str:
    """istiod's tlsMode of a WorkloadEntry (or inline ServiceEntry endpoint): the
    `security.istio.io/tlsMode` label as it is when present; else "istio" when the
    entry has a serviceAccount (it runs a sidecar with a workload identity); else
    none. "disabled" means none too (no transport-socket match metadata)."""
    mode = labels.get(TLS_MODE_LABEL)
    if mode is None:
        mode = "istio" if service_account else ""
    return "" if mode == "disabled" else mode


def pod_tls_mode(labels: Mapping[str, str]) -> str:
    """A pod's tlsMode: its label only (the injector sets it); a service account
    does not imply a sidecar."""
    mode = labels.get(TLS_MODE_LABEL, "")
    return "" if mode == "disabled" else mode


def _workload_endpoint(
    host: str, port: Port, we: Any, namespace: str, name: str, labels: Mapping[str, str] | None = None
) -> Endpoint:
    lbl = dict(labels if labels is not None else we.labels)
    target = int(we.ports.get(port.name, 0)) if port.name else 0
    return Endpoint.make(
        host,
        port.number,
        we.address,
        target or port.target_port or port.number,
        lbl,
        locality=we.locality,
        weight=we.weight or 1,
        service_account=we.service_account,
        namespace=namespace,
        workload_name=name,
        tls_mode=workload_entry_tls_mode(lbl, we.service_account),
    )


def service_entries(
    reg: Registry,
    configs: Sequence[Config],
    workload_entries: Sequence[Config],
    domain: str,
    cache: ConversionCache | None = None,
    pods: PodIndex = EMPTY_INDEX,
) -> None:
    cache = cache or ConversionCache()
    we_by_ns: dict[str, list[Config]] = {}
    for wcfg in workload_entries:
        we_by_ns.setdefault(wcfg.meta.namespace, []).append(wcfg)
    for cfg in configs:
        spec: Any = cfg.spec
        selecting = spec.HasField("workload_selector")
        wes = we_by_ns.get(cfg.meta.namespace, []) if selecting else []
        # Istio: a workloadSelector selects the namespace's Pods too (Kubernetes source).
        sel_pods = _selected_pods(pods, cfg.meta.namespace, spec.workload_selector.labels) if selecting else []
        inputs: tuple[object, ...] = ("se", cfg, *wes, "pods", *sel_pods)
        reg.merge(cache.get(inputs, lambda r, cfg=cfg, wes=wes, sp=sel_pods: _service_entry(r, cfg, wes, sp)))


def _selected_pods(pods: PodIndex, namespace: str, selector: Mapping[str, str]) -> list[PodInfo]:
    if not pods:
        return []
    return [p for p in pods.in_namespace(namespace) if p.ips and labels_match(selector, p.labels)]


def _service_entry(
    reg: Registry, cfg: Config, workload_entries: Sequence[Config], pods: Sequence[PodInfo] = ()
) -> None:
    spec: Any = cfg.spec
    ns = cfg.meta.namespace
    ports = tuple(
        Port(p.name, p.number, protocol_from(declared=p.protocol, port_name=p.name), p.target_port) for p in spec.ports
    )
    resolution = _RESOLUTIONS.get(int(spec.resolution), Resolution.NONE)
    selector = dict(spec.workload_selector.labels) if spec.HasField("workload_selector") else None
    for host in spec.hosts:
        svc = Service(
            hostname=host,
            namespace=ns,
            ports=ports,
            addresses=tuple(spec.addresses),
            resolution=resolution,
            mesh_external=int(spec.location) == 0,
            labels=MappingProxyType(dict(cfg.meta.labels)),
            selector=MappingProxyType(selector) if selector is not None else None,
            export_to=tuple(spec.export_to),
            source=f"ServiceEntry {ns}/{cfg.meta.name}",
            subject_alt_names=tuple(spec.subject_alt_names),
        )
        reg.add_service(svc)
        for port in ports:
            for i, we in enumerate(spec.endpoints):
                reg.add_endpoint(_workload_endpoint(host, port, we, ns, f"{cfg.meta.name}-{i}"))
            if selector is not None:
                for wcfg in workload_entries:
                    w: Any = wcfg.spec
                    if wcfg.meta.namespace == ns and labels_match(selector, w.labels):
                        reg.add_endpoint(_workload_endpoint(host, port, w, ns, wcfg.meta.name))
                for pod in pods:
                    reg.add_endpoint(
                        Endpoint.make(
                            host,
                            port.number,
                            pod.ips[0],
                            port.target_port or port.number,
                            pod.labels,
                            locality=pod.locality,
                            service_account=pod.service_account,
                            namespace=ns,
                            workload_name=pod.workload_name or pod.name,
                            healthy=pod.ready,
                            tls_mode="istio" if pod.labels.get(TLS_MODE_LABEL) == "istio" else "",
                        )
                    )


EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo"


def _export_annotation(annotations: Mapping[str, str]) -> tuple[str, ...]:
    """Istio's exportTo for Kubernetes Services: a comma-separated annotation."""
    raw = annotations.get(EXPORT_TO_ANNOTATION, "")
    return tuple(p.strip() for p in raw.split(",") if p.strip())


def _kube_port(p: Any) -> Port:
    target = p.target_port if isinstance(p.target_port, int) else 0
    return Port(p.name, p.port, protocol_from(app_protocol=p.app_protocol or "", port_name=p.name), target)


def kube_services(
    reg: Registry,
    services: Iterable[KubeService],
    slices: Sequence[EndpointSlice],
    workload_entries: Sequence[Config],
    domain: str,
    cache: ConversionCache | None = None,
    pods: PodIndex = EMPTY_INDEX,
) -> None:
    by_service: dict[tuple[str, str], list[EndpointSlice]] = {}
    for sl in slices:
        by_service.setdefault((sl.meta.namespace, sl.service_name), []).append(sl)
    we_by_addr: dict[tuple[str, str], Config] = {}
    we_by_ns: dict[str, list[Config]] = {}
    for wcfg in workload_entries:
        w: Any = wcfg.spec
        we_by_addr.setdefault((wcfg.meta.namespace, w.address), wcfg)
        we_by_ns.setdefault(wcfg.meta.namespace, []).append(wcfg)
    cache = cache or ConversionCache()
    for ks in services:
        ns_slices = by_service.get((ks.namespace, ks.name), [])
        ns_wes = we_by_ns.get(ks.namespace, [])
        # The Pods behind the endpoints are inputs too (Kubernetes source): a Pod
        # relabelled reconverts only the Services it backs.
        joined = _joined_pods(ks.namespace, ns_slices, pods) if pods else ()
        inputs: tuple[object, ...] = ("kube", domain, ks, *ns_slices, "we", *ns_wes, "pods", *joined)
        reg.merge(
            cache.get(
                inputs,
                lambda r, ks=ks, sl=ns_slices, wes=ns_wes: _kube_service(r, ks, sl, wes, we_by_addr, domain, pods),
            )
        )


def _joined_pods(namespace: str, slices: Sequence[EndpointSlice], pods: PodIndex) -> list[PodInfo]:
    out: list[PodInfo] = []
    for sl in slices:
        for ep in sl.endpoints:
            target = ep.target_ref.name if ep.target_ref and ep.target_ref.kind == "Pod" else ""
            for addr in ep.addresses:
                pod = pods.find(namespace, addr, target)
                if pod is not None:
                    out.append(pod)
    return out


def _kube_service(
    reg: Registry,
    ks: KubeService,
    slices: list[EndpointSlice],
    workload_entries: list[Config],
    we_by_addr: dict[tuple[str, str], Config],
    domain: str,
    pods: PodIndex = EMPTY_INDEX,
) -> None:
    ns = ks.namespace
    host = f"{ks.name}.{ns}.svc.{domain}"
    ports = tuple(_kube_port(p) for p in ks.ports)
    external = ks.type == "ExternalName"
    addresses = (ks.cluster_ip,) if ks.cluster_ip and ks.cluster_ip != "None" else ()
    svc = Service(
        hostname=host,
        namespace=ns,
        ports=ports,
        addresses=addresses,
        resolution=Resolution.DNS if external else Resolution.STATIC,
        mesh_external=external,
        labels=MappingProxyType(dict(ks.meta.labels)),
        selector=MappingProxyType(dict(ks.selector)) if ks.selector else None,
        export_to=_export_annotation(ks.meta.annotations),
        source=f"Service {ns}/{ks.name}",
        headless=ks.cluster_ip == "None" and not external,
    )
    reg.add_service(svc)
    if external and ks.external_name:
        for port in ports:
            reg.add_endpoint(Endpoint.make(host, port.number, ks.external_name, port.number))
        return
    for sl in slices:
        _slice_endpoints(reg, host, ports, ks, sl, we_by_addr, pods)
    if ks.selector:
        # Istio lets a Kubernetes Service select WorkloadEntries too.
        for wcfg in workload_entries:
            wspec: Any = wcfg.spec
            if wcfg.meta.namespace == ns and labels_match(ks.selector, wspec.labels):
                for port in ports:
                    reg.add_endpoint(_workload_endpoint(host, port, wspec, ns, wcfg.meta.name))


def _slice_endpoints(
    reg: Registry,
    host: str,
    ports: tuple[Port, ...],
    ks: KubeService,
    sl: EndpointSlice,
    we_by_addr: Mapping[tuple[str, str], Config],
    pods: PodIndex = EMPTY_INDEX,
) -> None:
    for sp in ports:
        slice_port = next((p for p in sl.ports if (p.name or "") == (sp.name or "")), None)
        if slice_port is None or slice_port.port is None:
            continue
        for ep in sl.endpoints:
            healthy = ep.conditions.ready is not False
            for addr in ep.addresses:
                we = we_by_addr.get((ks.namespace, addr))
                labels: dict[str, str] = {}
                sa = ""
                locality = f"/{ep.zone}" if ep.zone else ""
                workload = ep.target_ref.name if ep.target_ref else ""
                if we is not None:
                    w: Any = we.spec
                    labels = dict(w.labels)
                    sa = w.service_account
                    locality = w.locality or locality
                    workload = we.meta.name
                elif pods:
                    target = ep.target_ref.name if ep.target_ref and ep.target_ref.kind == "Pod" else ""
                    pod = pods.find(ks.namespace, addr, target)
                    if pod is not None:  # as istiod: the Pod's labels, account and Node locality
                        labels = dict(pod.labels)
                        sa = pod.service_account
                        locality = pod.locality or locality
                        workload = pod.workload_name or pod.name
                reg.add_endpoint(
                    Endpoint.make(
                        host,
                        sp.number,
                        addr,
                        slice_port.port,
                        labels,
                        locality=locality,
                        service_account=sa,
                        namespace=ks.namespace,
                        workload_name=workload,
                        healthy=healthy,
                        tls_mode=workload_entry_tls_mode(labels, sa) if we is not None else pod_tls_mode(labels),
                    )
                )


def build_registry(
    configs: Sequence[Config],
    services: Sequence[KubeService],
    slices: Sequence[EndpointSlice],
    domain: str,
    cache: ConversionCache | None = None,
    pods: PodIndex = EMPTY_INDEX,
) -> Registry:
    cache = cache or ConversionCache()
    reg = Registry()
    wes = [c for c in configs if c.meta.kind == "WorkloadEntry"]
    ses = [c for c in configs if c.meta.kind == "ServiceEntry"]
    kube_services(reg, services, slices, wes, domain, cache, pods)
    service_entries(reg, ses, wes, domain, cache, pods)
    cache.end_build()
    return reg
