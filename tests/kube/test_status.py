"""Status write-back with two replicas against the real API server: the Lease
holder (only) writes istiod's analysis messages to the Istio resources'
`status.validationMessages` (a VirtualService naming a Gateway that does not
exist: IST0101, level ERROR) and removes them once the problem is fixed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kube.test_replicas import holder
from tests.support.envoy import EnvoyFactory, envoy_factory_context
from tests.support.kube import KubeCluster, wait
from tests.support.mesh import Mesh


@pytest.fixture
def envoy_factory(tmp_path: Path) -> Iterator[EnvoyFactory]:
    with envoy_factory_context(tmp_path / "envoy") as factory:
        yield factory


def vs(ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {
            "hosts": ["web.example.com"],
            "gateways": ["missing-gw"],
            "http": [{"route": [{"destination": {"host": "web"}}]}],
        },
    }


def test_leader_writes_validation_messages_and_clears_them(
    tmp_path: Path, envoy_factory: EnvoyFactory, kube: KubeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ISTIOD_PY_LEASE_DURATION", "3")
    monkeypatch.setenv("ISTIOD_PY_LEASE_RETRY", "0.5")
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}})
    ns = kube.namespace("status")
    kube.apply(
        f"apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {ns}}}\n"
        "spec: {ports: [{name: http, port: 80}]}\n"
    )
    kube.apply(vs(ns))
    path = f"/apis/networking.istio.io/v1/namespaces/{ns}/virtualservices/web"
    replicas: list[Mesh] = []
    for i in range(2):
        m = Mesh(tmp_path / f"r{i}", envoy_factory, extra_args=["--kubeconfig", str(kube.kubeconfig)])
        replicas.append(m.start_with_ca())
    try:
        lead_id = wait(lambda: holder(kube), 15, "a Lease holder")
        leader = next(m for m in replicas if m.proc is not None and f"_{m.proc.pid}_" in lead_id)
        follower = next(m for m in replicas if m is not leader)

        def messages() -> list[Any]:
            return list((kube.get(path).get("status") or {}).get("validationMessages") or [])

        got = wait(messages, 20, "status.validationMessages on the VirtualService")
        assert got == [
            {
                "type": {"code": "IST0101", "name": "ReferencedResourceNotFound"},
                "level": "ERROR",
                "documentationUrl": "https://istio.io/latest/docs/reference/config/analysis/ist0101/",
            }
        ]
        generation = kube.get(path)["metadata"]["generation"]
        kube.apply(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "Gateway",
                "metadata": {"name": "missing-gw", "namespace": ns},
                "spec": {
                    "selector": {"istio": "ingressgateway"},
                    "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}],
                },
            }
        )
        wait(lambda: not messages(), 20, "the messages removed once the Gateway exists")
        assert kube.get(path)["metadata"]["generation"] == generation  # the status subresource only
        vs_key = f"VirtualService {ns}/web"
        assert f"status of {vs_key}" in leader.log_path.read_text()
        assert f"status of {vs_key}" not in follower.log_path.read_text()
    finally:
        for m in replicas:
            m.stop()


def _strip(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _strip(x) for k, x in v.items() if k not in ("lastTransitionTime", "observedGeneration")}
    if isinstance(v, list):
        return [_strip(x) for x in v]
    return v


def test_leader_writes_gateway_api_status(
    tmp_path: Path, envoy_factory: EnvoyFactory, kube: KubeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gateway API resources from the cluster get the status the conversion computes
    (the same as /debug/configz shows), written by the leader only; a change that
    makes a listener invalid is written too."""
    monkeypatch.setenv("ISTIOD_PY_LEASE_DURATION", "3")
    monkeypatch.setenv("ISTIOD_PY_LEASE_RETRY", "0.5")
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}})
    ns = kube.namespace("gwapi")
    kube.apply(
        f"apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {ns}}}\n"
        "spec: {ports: [{name: http, port: 80}]}\n"
    )
    gw: dict[str, Any] = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": ns},
        "spec": {"gatewayClassName": "istio", "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}]},
    }
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]},
    }
    kube.apply(gw, route)
    gw_path = f"/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/gateways/gw"
    route_path = f"/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes/web"
    replicas = [
        Mesh(tmp_path / f"r{i}", envoy_factory, extra_args=["--kubeconfig", str(kube.kubeconfig)]).start_with_ca()
        for i in range(2)
    ]
    try:
        lead_id = wait(lambda: holder(kube), 15, "a Lease holder")
        leader = next(m for m in replicas if m.proc is not None and f"_{m.proc.pid}_" in lead_id)
        follower = next(m for m in replicas if m is not leader)

        def computed(kind: str) -> Any:
            for st in leader.debug("/debug/configz")["gatewayApiStatus"]:
                if (st["kind"], st["namespace"], st["name"]) == (kind, ns, "gw" if kind == "Gateway" else "web"):
                    return st["status"]
            return None

        def written(path: str, kind: str) -> bool:
            want = computed(kind)
            return want is not None and _strip(kube.get(path).get("status") or {}) == want

        wait(lambda: written(gw_path, "Gateway"), 20, "the Gateway's status as computed")
        wait(lambda: written(route_path, "HTTPRoute"), 20, "the HTTPRoute's status as computed")
        status = kube.get(gw_path)["status"]
        assert {c["type"]: c["status"] for c in status["conditions"]}["Accepted"] == "True"
        assert all(c.get("lastTransitionTime") for c in status["conditions"])
        [parent] = kube.get(route_path)["status"]["parents"]
        assert parent["controllerName"] == "istio.io/gateway-controller"
        assert {c["type"]: c["status"] for c in parent["conditions"]}["Accepted"] == "True"

        # A listener protocol istiod does not support: the new status is written.
        gw["spec"]["listeners"].append({"name": "udp", "port": 9000, "protocol": "UDP"})
        kube.apply(gw)

        def udp_listener_refused() -> bool:
            listeners = {li["name"]: li for li in (kube.get(gw_path).get("status") or {}).get("listeners") or []}
            return "udp" in listeners and written(gw_path, "Gateway")

        wait(udp_listener_refused, 20, "the status with the refused listener")
        assert f"status of Gateway {ns}/gw written" in leader.log_path.read_text()
        assert f"status of Gateway {ns}/gw" not in follower.log_path.read_text()
    finally:
        for m in replicas:
            m.stop()
