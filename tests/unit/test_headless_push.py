"""An endpoint change of a headless Kubernetes Service is a full push, as istiod's
HeadlessEndpointUpdate: captured sidecars have one listener per endpoint and the
service's ORIGINAL_DST cluster carries mTLS only when every endpoint has a
sidecar, so listeners and clusters follow the endpoints, not only EDS."""

from __future__ import annotations

from istiod_py.model import parse_proxy
from istiod_py.registry.aggregate import diff
from istiod_py.translate.generate import Translator
from istiod_py.xds.types import TypeUrl
from tests.support.states import mesh_state

SERVICES = """\
apiVersion: v1
kind: Service
metadata: {name: mongo, namespace: default}
spec:
  clusterIP: None
  selector: {app: mongo}
  ports: [{name: tcp, port: 27017}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.96.0.20
  selector: {app: web}
  ports: [{name: http, port: 8080}]
"""


def _entry(name: str, ip: str, app: str, sidecar: bool = True) -> str:
    # Without the tlsMode label a WorkloadEntry with a serviceAccount also counts as a sidecar.
    labels = f"{{app: {app}, security.istio.io/tlsMode: istio}}" if sidecar else f"{{app: {app}}}"
    account = f", serviceAccount: {app}" if sidecar else ""
    return f"""\
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: default}}
spec: {{address: {ip}, labels: {labels}{account}}}
"""


def test_headless_endpoint_change_is_a_full_push() -> None:
    old = mesh_state(SERVICES, _entry("mongo-0", "10.244.0.20", "mongo"))
    new = mesh_state(SERVICES, _entry("mongo-0", "10.244.0.20", "mongo"), _entry("mongo-1", "10.244.0.21", "mongo"))
    change = diff(old, new)
    assert change.full and change.reason == "headless-endpoints"


def test_sidecar_gained_only_in_labels_is_a_full_push_and_changes_the_cluster() -> None:
    old = mesh_state(SERVICES, _entry("mongo-0", "10.244.0.20", "mongo", sidecar=False))
    new = mesh_state(SERVICES, _entry("mongo-0", "10.244.0.20", "mongo"))
    change = diff(old, new)
    assert change.full and change.reason == "headless-endpoints"
    proxy = parse_proxy(
        "sidecar~10.244.0.5~web-1.default~default.svc.cluster.local",
        {"NAMESPACE": "default", "LABELS": {"app": "web"}, "INTERCEPTION_MODE": "REDIRECT", "SDS": "true"},
    )
    translator = Translator()
    name = "outbound|27017||mongo.default.svc.cluster.local"
    before = translator.generate(old, proxy, TypeUrl.CLUSTER).index[name].message()
    translator.context(new)
    after = translator.generate(new, proxy, TypeUrl.CLUSTER).index[name].message()
    assert not before.HasField("transport_socket") and after.HasField("transport_socket")


def test_endpoint_change_of_a_service_with_a_cluster_ip_stays_eds_only() -> None:
    old = mesh_state(SERVICES, _entry("web-0", "10.244.0.30", "web"))
    new = mesh_state(SERVICES, _entry("web-0", "10.244.0.30", "web"), _entry("web-1", "10.244.0.31", "web"))
    change = diff(old, new)
    assert not change.full and change.eds_hosts == frozenset({"web.default.svc.cluster.local"})


def test_service_without_a_cluster_ip_in_its_file_is_not_headless() -> None:
    """Only `clusterIP: None` is headless (istiod's Passthrough); a file that leaves
    the cluster IP out (loopback meshes) keeps EDS-only endpoint pushes."""
    plain = SERVICES.replace("  clusterIP: None\n", "")
    old = mesh_state(plain, _entry("mongo-0", "10.244.0.20", "mongo"))
    new = mesh_state(plain, _entry("mongo-0", "10.244.0.20", "mongo"), _entry("mongo-1", "10.244.0.21", "mongo"))
    assert not old.services["mongo.default.svc.cluster.local"].headless
    change = diff(old, new)
    assert not change.full and change.eds_hosts == frozenset({"mongo.default.svc.cluster.local"})
