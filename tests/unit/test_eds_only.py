"""Endpoint-only edits of ServiceEntry and WorkloadEntry are EDS-only pushes of the
affected hosts, as in istiod (issue 18); edits that reach clusters stay full."""

from __future__ import annotations

from pathlib import Path

import pytest

from istiod_py.config.loader import load_directory
from istiod_py.model import MeshState
from istiod_py.model.proxy import parse_proxy
from istiod_py.registry.aggregate import Aggregator, Change, SourceSnapshot, diff
from istiod_py.translate.generate import Translator
from istiod_py.xds.types import TypeUrl

HOST = "api.example.internal"
OTHER = "other.example.internal"


def service_entry(
    endpoints: str,
    resolution: str = "STATIC",
    ports: str = "[{name: http, number: 8080, protocol: HTTP}]",
    host: str = HOST,
    name: str = "api",
) -> str:
    return f"""---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: apps}}
spec:
  hosts: ["{host}"]
  location: MESH_INTERNAL
  resolution: {resolution}
  ports: {ports}
  endpoints:
{endpoints}"""


def ep(address: str = "10.0.0.1", extra: str = "") -> str:
    return f"  - {{address: {address}, labels: {{app: api, version: v1}}{extra}}}\n"


SELECTED = f"""---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: wl, namespace: apps}}
spec:
  hosts: ["{HOST}"]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{name: http, number: 8080, protocol: HTTP, targetPort: 9080}}]
  workloadSelector: {{labels: {{app: api}}}}
"""


def workload_entry(address: str = "10.0.1.1", extra: str = "", labels: str = "{app: api, version: v1}") -> str:
    return f"""---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: api-vm, namespace: apps}}
spec:
  address: {address}
  labels: {labels}
{extra}"""


UNRELATED = service_entry(ep("10.9.9.9"), host=OTHER, name="other")


class Mesh:
    def __init__(self, tmp: Path) -> None:
        self.dir, self.agg = tmp, Aggregator()

    def state(self, text: str) -> MeshState:
        (self.dir / "mesh.yaml").write_text(text + UNRELATED, encoding="utf-8")
        res = load_directory(self.dir)
        assert not res.errors, res.errors
        self.agg.set_source(
            "files", SourceSnapshot(tuple(res.configs), tuple(res.services), tuple(res.endpoint_slices))
        )
        return self.agg.build()


def change(tmp: Path, before: str, after: str) -> tuple[Change, MeshState, MeshState]:
    mesh = Mesh(tmp)
    a = mesh.state(before)
    b = mesh.state(after)
    return diff(a, b), a, b


SE_ENDPOINT_EDITS = {
    "address": (ep(), ep("10.0.0.2")),
    "endpoint added": (ep(), ep() + ep("10.0.0.2")),
    "endpoint port": (ep(extra=", ports: {http: 9080}"), ep(extra=", ports: {http: 9090}")),
    "endpoint labels": (ep(), "  - {address: 10.0.0.1, labels: {app: api, version: v2}}\n"),
    "weight": (ep(extra=", weight: 1"), ep(extra=", weight: 5")),
    "locality": (ep(extra=", locality: us-east/a"), ep(extra=", locality: us-west/b")),
}


@pytest.mark.parametrize("kind", sorted(SE_ENDPOINT_EDITS))
def test_service_entry_endpoint_edit_is_eds_only(tmp_path: Path, kind: str) -> None:
    old, new = SE_ENDPOINT_EDITS[kind]
    ch, a, b = change(tmp_path, service_entry(old), service_entry(new))
    assert not ch.full, (kind, ch.reason)
    assert ch.eds_hosts == {HOST}  # the unrelated ServiceEntry is not pushed
    assert a.endpoint_digests[HOST] != b.endpoint_digests[HOST]


WE_ENDPOINT_EDITS = {
    "address": (workload_entry(), workload_entry("10.0.1.2")),
    "endpoint port": (workload_entry(extra="  ports: {http: 9081}\n"), workload_entry(extra="  ports: {http: 9082}\n")),
    "labels": (workload_entry(), workload_entry(labels="{app: api, version: v2}")),
    "weight": (workload_entry(extra="  weight: 2\n"), workload_entry(extra="  weight: 7\n")),
    "locality": (workload_entry(extra="  locality: us-east/a\n"), workload_entry(extra="  locality: us-west/b\n")),
}


@pytest.mark.parametrize("kind", sorted(WE_ENDPOINT_EDITS))
def test_workload_entry_endpoint_edit_is_eds_only(tmp_path: Path, kind: str) -> None:
    old, new = WE_ENDPOINT_EDITS[kind]
    ch, _, _ = change(tmp_path, SELECTED + old, SELECTED + new)
    assert not ch.full, (kind, ch.reason)
    assert ch.eds_hosts == {HOST}


def test_eds_only_edit_translates_to_new_endpoints_and_same_clusters(tmp_path: Path) -> None:
    ch, a, b = change(tmp_path, service_entry(ep()), service_entry(ep("10.0.0.2")))
    assert not ch.full
    proxy = parse_proxy("sidecar~10.1.0.1~c.apps~apps.svc.cluster.local", {"NAMESPACE": "apps"})
    tr = Translator()
    cds_a = tr.generate(a, proxy, TypeUrl.CLUSTER)
    eds_a = tr.generate(a, proxy, TypeUrl.ENDPOINT)
    cds_b = tr.generate(b, proxy, TypeUrl.CLUSTER)
    eds_b = tr.generate(b, proxy, TypeUrl.ENDPOINT)
    assert cds_a.version == cds_b.version
    name = f"outbound|8080||{HOST}"
    assert b"10.0.0.2" in eds_b.index[name].body and b"10.0.0.2" not in eds_a.index[name].body
    assert eds_a.index[f"outbound|8080||{OTHER}"] is eds_b.index[f"outbound|8080||{OTHER}"]


STILL_FULL = {
    "hosts": (service_entry(ep()), service_entry(ep(), host="api2.example.internal")),
    "service ports": (
        service_entry(ep()),
        service_entry(ep(), ports="[{name: http, number: 8081, protocol: HTTP}]"),
    ),
    # DNS endpoints are inlined in the cluster: CDS must change.
    "dns endpoint address": (
        service_entry("  - {address: a.example.com}\n", "DNS"),
        service_entry("  - {address: b.example.com}\n", "DNS"),
    ),
    # A new identity behind the host changes the cluster's verified SANs.
    "service account": (
        service_entry(ep(extra=", serviceAccount: a")),
        service_entry(ep(extra=", serviceAccount: b")),
    ),
}


@pytest.mark.parametrize("kind", sorted(STILL_FULL))
def test_edits_that_reach_clusters_stay_full(tmp_path: Path, kind: str) -> None:
    old, new = STILL_FULL[kind]
    ch, _, _ = change(tmp_path, old, new)
    assert ch.full, kind
