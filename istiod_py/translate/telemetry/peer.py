"""Workload identity for request metrics, from labels as Istio reads them.

The outbound side learns its peer (the destination workload) from the endpoint's
metadata, which EDS carries under PEER_METADATA; the own side reads the proxy's
node metadata at request time. (Istio's metadata exchange sends both ways in
headers; upstream Envoy has no such filter, see metrics.py for what that costs.)
"""

from __future__ import annotations

from collections.abc import Mapping

from istiod_py.model import Endpoint

PEER_METADATA = "istiod_py.peer"
UNKNOWN = "unknown"


def app_of(labels: Mapping[str, str]) -> str:
    return (
        labels.get("service.istio.io/canonical-name")
        or labels.get("app.kubernetes.io/name")
        or labels.get("app")
        or UNKNOWN
    )


def version_of(labels: Mapping[str, str]) -> str:
    return (
        labels.get("service.istio.io/canonical-revision")
        or labels.get("app.kubernetes.io/version")
        or labels.get("version")
        or UNKNOWN
    )


def peer_metadata(ep: Endpoint) -> dict[str, str]:
    return {
        "workload": ep.workload_name or UNKNOWN,
        "namespace": ep.namespace or UNKNOWN,
        "app": app_of(ep.labels),
        "version": version_of(ep.labels),
    }
