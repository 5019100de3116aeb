"""API-server JSON -> the objects the file source produces.

Services and EndpointSlices go through the very parsers the file loader uses
(config/kube_types.py), Istio resources through the loader itself (schema and
semantic validation, the same ConfigErrors), so the same object gives the same
xDS whichever way it arrives. Objects from the API server are already valid
Kubernetes, so fields the file parser does not know (new API fields, status) are
pruned first instead of being reported as typos.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from istiod_py.config import gatewayapi
from istiod_py.config import kube_types as kt
from istiod_py.config.loader import LoadResult, load_text
from istiod_py.config.model import KINDS, Config, ConfigError, KindInfo
from istiod_py.registry.pods import PodInfo

from .client import JsonObj

log = logging.getLogger("istiod_py.kube")

TLS_MODE_LABEL = "security.istio.io/tlsMode"
LOCALITY_LABEL = "istio-locality"  # pod label overriding the Node's locality: region.zone.subzone
REGION_LABELS = ("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region")
ZONE_LABELS = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")
SUBZONE_LABEL = "topology.istio.io/subzone"


def _pick(obj: Any, allowed: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k in allowed} if isinstance(obj, dict) else {}


def _meta(obj: JsonObj) -> dict[str, Any]:
    return _pick(obj.get("metadata") or {}, kt._OBJECT_META_FIELDS)


def service(obj: JsonObj) -> kt.KubeService | None:
    spec = _pick(obj.get("spec") or {}, kt._SERVICE_SPEC_FIELDS)
    spec["ports"] = [_pick(p, kt._SERVICE_PORT_FIELDS) for p in spec.get("ports") or []]
    doc = {"apiVersion": "v1", "kind": "Service", "metadata": _meta(obj), "spec": spec}
    try:
        return kt.parse_service(doc, "default")
    except kt.KubeParseError as e:
        log.warning("Service %s/%s from the API server: %s; ignored", *_ns_name(obj), e)
        return None


def endpoint_slice(obj: JsonObj) -> kt.EndpointSlice | None:
    endpoints = []
    for e in obj.get("endpoints") or []:
        ep = _pick(e, kt._ENDPOINT_FIELDS)
        if "conditions" in ep:
            ep["conditions"] = _pick(ep["conditions"], kt._CONDITION_FIELDS)
        if "targetRef" in ep:
            ep["targetRef"] = _pick(ep["targetRef"], kt._TARGET_REF_FIELDS)
        ep.pop("hints", None)
        ep.pop("deprecatedTopology", None)
        if ep.get("addresses"):
            endpoints.append(ep)
    doc = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": _meta(obj),
        "addressType": obj.get("addressType") or "IPv4",
        "endpoints": endpoints,
        "ports": [_pick(p, kt._SLICE_PORT_FIELDS) for p in obj.get("ports") or []],
    }
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if kt.SERVICE_NAME_LABEL not in labels:
        return None  # not owned by a Service: nothing for the registry
    try:
        return kt.parse_endpoint_slice(doc, "default")
    except kt.KubeParseError as e:
        log.warning("EndpointSlice %s/%s from the API server: %s; ignored", *_ns_name(obj), e)
        return None


def _ns_name(obj: JsonObj) -> tuple[str, str]:
    m = obj.get("metadata") or {}
    return str(m.get("namespace") or ""), str(m.get("name") or "")


def _labels(obj: JsonObj) -> Mapping[str, str]:
    raw = (obj.get("metadata") or {}).get("labels") or {}
    return MappingProxyType({str(k): str(v) for k, v in raw.items()})


def _workload_name(obj: JsonObj) -> str:
    """The workload a Pod belongs to, as istiod names it: a ReplicaSet's Pods
    belong to its Deployment (the ReplicaSet name less its pod-template hash)."""
    meta = obj.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if not ref.get("controller"):
            continue
        name = str(ref.get("name") or "")
        if ref.get("kind") == "ReplicaSet":
            template_hash = str((meta.get("labels") or {}).get("pod-template-hash") or "")
            if template_hash and name.endswith("-" + template_hash):
                return name[: -len(template_hash) - 1]
            return name.rsplit("-", 1)[0] if "-" in name else name
        if ref.get("kind") == "Job":
            return name
        return name
    return str(meta.get("name") or "")


def pod(obj: JsonObj) -> PodInfo | None:
    ns, name = _ns_name(obj)
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return None  # terminal Pods serve nothing (istiod drops them too)
    ips = tuple(str(p.get("ip")) for p in status.get("podIPs") or [] if p.get("ip"))
    if not ips and status.get("podIP"):
        ips = (str(status["podIP"]),)
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    labels = _labels(obj)
    loc = labels.get(LOCALITY_LABEL, "")
    return PodInfo(
        namespace=ns,
        name=name,
        ips=ips,
        labels=labels,
        service_account=str(spec.get("serviceAccountName") or "default"),
        node_name=str(spec.get("nodeName") or ""),
        locality=loc.replace(".", "/") if loc else "",
        ready=ready,
        workload_name=_workload_name(obj),
    )


def node_locality(obj: JsonObj) -> str:
    """region/zone/subzone from a Node's topology labels ("" when it has none)."""
    labels = _labels(obj)
    region = next((labels[k] for k in REGION_LABELS if k in labels), "")
    zone = next((labels[k] for k in ZONE_LABELS if k in labels), "")
    subzone = labels.get(SUBZONE_LABEL, "")
    return f"{region}/{zone}/{subzone}".rstrip("/")


def namespace_labels(obj: JsonObj) -> Mapping[str, str]:
    return _labels(obj)


@dataclass(frozen=True)
class IstioObject:
    """One Istio custom resource: its Config, or the errors that kept it out."""

    config: Config | None
    errors: tuple[ConfigError, ...]
    # status.validationMessages as stored: ((code, name, level), ...) sorted (kube/status.py)
    messages: tuple[tuple[str, str, str], ...] = ()
    # Gateway API: the stored status, normalized (status.py compares it with the computed one)
    status: str = ""
    # Istio kinds: status.conditions as stored, canonical JSON (nack_status.py's Rejected condition)
    conditions: str = ""


def normalized_status(status: Any) -> str:
    """Canonical JSON of a status without the fields that change on every write
    (lastTransitionTime, observedGeneration), so equal content compares equal."""

    def strip(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k not in ("lastTransitionTime", "observedGeneration")}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    return json.dumps(strip(status or {}), sort_keys=True, separators=(",", ":"))


def stored_messages(obj: JsonObj) -> tuple[tuple[str, str, str], ...]:
    out = set()
    for m in (obj.get("status") or {}).get("validationMessages") or []:
        if isinstance(m, dict):
            t = m.get("type") or {}
            out.add((str(t.get("code") or ""), str(t.get("name") or ""), str(m.get("level") or "")))
    return tuple(sorted(out))


def stored_conditions(obj: JsonObj) -> str:
    conds = (obj.get("status") or {}).get("conditions")
    return json.dumps(conds, sort_keys=True, separators=(",", ":")) if conds else ""


def istio_converter(info: KindInfo, version: Any) -> Any:
    """A converter for one Istio kind; `version()` says which API version the
    informer reads (list items carry no apiVersion of their own)."""

    def convert(obj: JsonObj) -> IstioObject:
        body = dict(obj)
        body["apiVersion"] = f"{info.group}/{version()}"
        body["kind"] = info.kind
        body["metadata"] = _meta(obj)
        ns, name = _ns_name(obj)
        result: LoadResult = load_text(json.dumps(body), f"kubernetes {info.kind} {ns}/{name}")
        config = result.configs[0] if result.configs and not result.errors else None
        # A line number in the JSON the loader was given means nothing to the user.
        errors = tuple(dataclasses.replace(e, line=None) for e in result.errors)
        if info.group == gatewayapi.GROUP:
            return IstioObject(config, errors, (), normalized_status(obj.get("status")))
        return IstioObject(config, errors, stored_messages(obj), conditions=stored_conditions(obj))

    return convert


def plural(kind: str) -> str:
    """Kubernetes' plural resource name for a kind (ServiceEntry -> serviceentries)."""
    low = kind.lower()
    if low.endswith("y") and low[-2:-1] not in "aeiou":
        return low[:-1] + "ies"
    if low.endswith(("s", "x")):
        return low + "es"
    return low + "s"


def gateway_api_kinds() -> list[KindInfo]:
    """The Gateway API kinds the loader reads, as KindInfo (kind as users write it)."""
    return [KindInfo(k.kind, gatewayapi.GROUP, k.versions, k.message) for _, k in sorted(gatewayapi.KINDS.items())]


def istio_kinds() -> list[KindInfo]:
    return [KINDS[k] for k in sorted(KINDS)]
