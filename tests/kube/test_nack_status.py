"""NACK origins in Kubernetes status, against the real API server and a real Envoy
(issue 16): an EnvoyFilter that passes validation but that Envoy rejects (Lua that
does not compile) is applied in the cluster; the sidecar NACKs; the leader writes
`status.conditions` Reconciled False, reason Rejected, naming the proxy count, the
rejected listener, the patch and Envoy's error, on the status subresource only
(generation unchanged); the proxy keeps serving traffic; fixing the filter clears
the condition and the fixed filter reaches the Envoy; a rejection by a proxy that
has disconnected is removed too. Both with quarantine (the
default) and without (`--no-nack-quarantine`, istiod's behaviour)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_nack_quarantine import BAD_LUA, GOOD_LUA
from tests.support.envoy import EnvoyFactory, envoy_factory_context
from tests.support.kube import KubeCluster, wait
from tests.support.mesh import Mesh
from tests.support.net import allocate_ip
from tests.support.upstreams import UpstreamFactory, http_request


@pytest.fixture
def envoy_factory(tmp_path: Path) -> Iterator[EnvoyFactory]:
    with envoy_factory_context(tmp_path / "envoy") as factory:
        yield factory


def base(ns: str, bind: str, host: str, port: int) -> str:
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: backend, namespace: {ns}}}
spec:
  selector: {{app: backend}}
  ports: [{{name: http, port: 9080}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: backend, namespace: {ns}}}
spec: {{address: {host}, ports: {{http: {port}}}, labels: {{app: backend}}}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: client, namespace: {ns}}}
spec:
  workloadSelector: {{labels: {{app: client}}}}
  egress:
  - port: {{number: 9080, protocol: HTTP, name: http}}
    bind: {bind}
    captureMode: NONE
    hosts: ["./*"]
"""


def in_ns(text: str, ns: str) -> str:
    return text.replace("namespace: default", f"namespace: {ns}")


@pytest.mark.parametrize("quarantine", [True, False], ids=["quarantine", "istiod-mode"])
def test_rejected_envoyfilter_gets_a_rejected_condition_until_fixed(
    quarantine: bool,
    tmp_path: Path,
    envoy_factory: EnvoyFactory,
    kube: KubeCluster,
    upstreams: UpstreamFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ISTIOD_PY_LEASE_DURATION", "3")
    monkeypatch.setenv("ISTIOD_PY_LEASE_RETRY", "0.5")
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}})
    ns = kube.namespace("nack")
    app = upstreams.http("backend")
    bind = allocate_ip()
    kube.apply(base(ns, bind, app.host, app.port))
    args = ["--kubeconfig", str(kube.kubeconfig)] + ([] if quarantine else ["--no-nack-quarantine"])
    mesh = Mesh(tmp_path, envoy_factory, extra_args=args)
    mesh.start()
    try:
        sc = mesh.sidecar("client", namespace=ns, labels={"app": "client"})
        mesh.wait_listener(sc, f"{bind}_9080")

        def get() -> Any:
            return http_request(bind, 9080, "/", host="backend:9080", headers={"Connection": "close"})

        mesh.wait(lambda: get().status == 200, 15, "traffic through the client sidecar")
        path = f"/apis/networking.istio.io/v1alpha3/namespaces/{ns}/envoyfilters/lua"

        def rejected() -> dict[str, Any] | None:
            for c in (kube.get(path).get("status") or {}).get("conditions") or []:
                if c.get("type") == "Reconciled" and c.get("reason") == "Rejected":
                    return c  # type: ignore[no-any-return]
            return None

        kube.apply(in_ns(BAD_LUA, ns))
        generation = kube.get(path)["metadata"]["generation"]
        cond = wait(rejected, 30, "the Rejected condition on the EnvoyFilter")
        assert cond["status"] == "False", cond
        msg = cond["message"]
        assert msg.startswith(f"rejected by 1 proxy (LDS {bind}_9080; configPatches[0]): "), msg
        # Quarantine on (the default): served without the filter; off (as istiod): the Envoy
        # keeps its last accepted listener, and the trace is unambiguous (an EnvoyFilter patch).
        held = "quarantined: served without it" if quarantine else "the proxies keep their earlier config"
        assert "lua" in msg.lower() and msg.endswith(held + " until it changes"), msg
        assert cond["lastTransitionTime"], cond
        assert kube.get(path)["metadata"]["generation"] == generation  # the status subresource only
        assert f"status of EnvoyFilter {ns}/lua: Reconciled False (Rejected)" in mesh.log_tail(400)
        # The rejection is the only thing that changed: the proxy's traffic still flows.
        assert get().status == 200
        # Nothing else was blamed: the Sidecar shares the rejected listener but is not written.
        sidecar = kube.get(f"/apis/networking.istio.io/v1/namespaces/{ns}/sidecars/client")
        assert not (sidecar.get("status") or {}).get("conditions"), sidecar.get("status")

        kube.apply(in_ns(GOOD_LUA, ns))
        wait(lambda: rejected() is None, 30, "the Rejected condition removed once the filter is fixed")
        mesh.wait(lambda: get().headers.get("x-lua") == "fixed", 15, "the fixed Lua filter on the client")
        assert not (kube.get(path).get("status") or {}).get("conditions")

        # Broken again, then the only rejecting proxy goes away: its rejection is not a current one.
        kube.apply(in_ns(BAD_LUA, ns))
        wait(rejected, 30, "the Rejected condition again")
        sc.stop()
        wait(lambda: rejected() is None, 30, "the Rejected condition removed once no connected proxy rejects it")
    finally:
        mesh.stop()
