"""Pure parts of the Kubernetes source: API JSON -> the file source's objects,
Pod -> PodInfo (workload, locality, readiness), label selectors, plurals, the
TokenReview answer -> identity, and the endpoint join in the registry."""

from __future__ import annotations

from typing import Any

import pytest

from istiod_py.ca.errors import AuthenticationError
from istiod_py.ca.spiffe import Identity
from istiod_py.config.loader import load_text
from istiod_py.kube import convert
from istiod_py.kube.selectors import namespace_selected, parse_selectors
from istiod_py.kube.tokenreview import identity_from_review
from istiod_py.registry.aggregate import Aggregator, SourceSnapshot, diff
from istiod_py.registry.pods import PodInfo

SERVICE_FROM_API: dict[str, Any] = {
    "kind": "Service",
    "apiVersion": "v1",
    "metadata": {
        "name": "web",
        "namespace": "shop",
        "uid": "u",
        "resourceVersion": "7",
        "labels": {"app": "web"},
        "managedFields": [{"manager": "kubectl"}],
        "somethingNew": {"a": 1},  # a future ObjectMeta field: pruned, not an error
    },
    "spec": {
        "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080, "futureField": 1}],
        "selector": {"app": "web"},
        "clusterIP": "10.96.0.10",
        "clusterIPs": ["10.96.0.10"],
        "type": "ClusterIP",
        "ipFamilies": ["IPv4"],
        "brandNewSpecField": True,
    },
    "status": {"loadBalancer": {}},
}


def test_service_from_the_api_equals_the_same_service_from_a_file() -> None:
    from_api = convert.service(SERVICE_FROM_API)
    from_file = load_text(
        """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  clusterIP: 10.96.0.10
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
""",
        "f.yaml",
    ).services[0]
    assert from_api is not None
    assert (from_api.ports, dict(from_api.selector), from_api.cluster_ip, from_api.type) == (
        from_file.ports,
        dict(from_file.selector),
        from_file.cluster_ip,
        from_file.type,
    )
    assert dict(from_api.meta.labels) == {"app": "web"}


def test_endpoint_slice_without_a_service_label_is_not_for_the_registry() -> None:
    sl = {"metadata": {"name": "x", "namespace": "a"}, "addressType": "IPv4", "endpoints": [], "ports": []}
    assert convert.endpoint_slice(sl) is None
    sl["metadata"]["labels"] = {"kubernetes.io/service-name": "web"}
    sl["endpoints"] = [{"addresses": ["10.0.0.1"], "conditions": {"ready": True}, "zone": "z", "hints": {}}]
    out = convert.endpoint_slice(sl)
    assert out is not None and out.service_name == "web" and out.endpoints[0].zone == "z"


def pod(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "metadata": {
            "name": "reviews-v1-5d8f9-abcde",
            "namespace": "bookinfo",
            "labels": {"app": "reviews", "version": "v1", "pod-template-hash": "5d8f9"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "reviews-v1-5d8f9", "controller": True}],
        },
        "spec": {"serviceAccountName": "bookinfo-reviews", "nodeName": "n1"},
        "status": {
            "phase": "Running",
            "podIP": "10.1.0.5",
            "podIPs": [{"ip": "10.1.0.5"}, {"ip": "fd00::5"}],
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    base.update(over)
    return base


def test_pod_info() -> None:
    p = convert.pod(pod())
    assert p is not None
    assert p.ips == ("10.1.0.5", "fd00::5")
    assert p.service_account == "bookinfo-reviews" and p.node_name == "n1" and p.ready
    assert p.workload_name == "reviews-v1"  # the Deployment, as istiod names the workload
    assert convert.pod(pod(status={"phase": "Succeeded"})) is None
    loc = pod()
    loc["metadata"]["labels"]["istio-locality"] = "us-east.us-east-1a.rack7"
    assert convert.pod(loc).locality == "us-east/us-east-1a/rack7"  # type: ignore[union-attr]
    unready = convert.pod(
        pod(spec={}, status={"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]})
    )
    assert unready is not None
    assert (unready.ips, unready.ready, unready.service_account, unready.node_name) == ((), False, "default", "")


def test_node_locality() -> None:
    labels = {"topology.kubernetes.io/region": "eu", "topology.kubernetes.io/zone": "eu-1"}
    assert convert.node_locality({"metadata": {"labels": labels}}) == "eu/eu-1"
    labels["topology.istio.io/subzone"] = "r7"
    assert convert.node_locality({"metadata": {"labels": labels}}) == "eu/eu-1/r7"
    assert convert.node_locality({"metadata": {}}) == ""


@pytest.mark.parametrize(
    ("kind", "plural"),
    [
        ("VirtualService", "virtualservices"),
        ("ServiceEntry", "serviceentries"),
        ("AuthorizationPolicy", "authorizationpolicies"),
        ("Gateway", "gateways"),
        ("Telemetry", "telemetries"),
        ("Ingress", "ingresses"),
        ("Gateway", "gateways"),
    ],
)
def test_plural(kind: str, plural: str) -> None:
    assert convert.plural(kind) == plural


def test_discovery_selectors() -> None:
    sels = parse_selectors(
        [{"matchLabels": {"env": "prod"}}, {"matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]}],
        "mesh",
    )
    assert namespace_selected(sels, {"env": "prod"})
    assert namespace_selected(sels, {"team": "a"})
    assert not namespace_selected(sels, {"team": "b"})
    assert namespace_selected([], {})
    with pytest.raises(ValueError, match=r"discoverySelectors\[0\]\.matchExpressions\[0\]\.operator"):
        parse_selectors([{"matchExpressions": [{"key": "k", "operator": "Maybe"}]}], "mesh")


def test_token_review_answer() -> None:
    ok = {"authenticated": True, "audiences": ["istio-ca"], "user": {"username": "system:serviceaccount:ns1:sleep"}}
    assert identity_from_review(ok, ["istio-ca"]) == Identity("ns1", "sleep")
    with pytest.raises(AuthenticationError, match="audiences"):
        identity_from_review({**ok, "audiences": ["api"]}, ["istio-ca"])
    with pytest.raises(AuthenticationError, match="not a service account"):
        identity_from_review({**ok, "user": {"username": "admin"}}, ["istio-ca"])
    with pytest.raises(AuthenticationError, match="expired"):
        identity_from_review({"authenticated": False, "error": "token expired"}, ["istio-ca"])


SVC = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: bookinfo}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: reviews-1, namespace: bookinfo, labels: {kubernetes.io/service-name: reviews}}
addressType: IPv4
ports: [{name: http, port: 9080}]
endpoints:
- addresses: [10.1.0.5]
  conditions: {ready: true}
  targetRef: {kind: Pod, name: reviews-v1-5d8f9-abcde, namespace: bookinfo}
"""


def test_endpoints_take_labels_account_and_locality_from_their_pod() -> None:
    loaded = load_text(SVC, "svc.yaml")
    base = convert.pod(pod())
    assert base is not None
    agg = Aggregator()
    agg.set_source("k", SourceSnapshot((), tuple(loaded.services), tuple(loaded.endpoint_slices), pods=(base,)))
    state = agg.build()
    (ep,) = state.endpoints["reviews.bookinfo.svc.cluster.local"]
    assert ep.labels["version"] == "v1" and ep.service_account == "bookinfo-reviews"
    assert ep.workload_name == "reviews-v1" and ep.namespace == "bookinfo"
    # A relabelled Pod: an endpoint-only change.
    relabelled = PodInfo(**{**base.__dict__, "labels": {"app": "reviews", "version": "v2"}})
    agg.set_source("k", SourceSnapshot((), tuple(loaded.services), tuple(loaded.endpoint_slices), pods=(relabelled,)))
    new = agg.build()
    assert new.endpoints["reviews.bookinfo.svc.cluster.local"][0].labels["version"] == "v2"
    change = diff(state, new)
    assert not change.full and change.eds_hosts == {"reviews.bookinfo.svc.cluster.local"}
