"""Auto mTLS on the ORIGINAL_DST cluster of a headless service, for captured
sidecars, as istiod decides it: an ORIGINAL_DST cluster has no endpoint metadata
to match, so the whole service port gets the Istio mTLS socket when every
endpoint runs a sidecar (`tlsMode: istio`), and plaintext when there are no
endpoints or any endpoint has none (istiod's BestEffortInferServiceMTLSMode and
applyUpstreamTLSSettings)."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from istiod_py.model import MeshState, parse_proxy
from istiod_py.translate.generate import Translator
from istiod_py.xds.types import TypeUrl
from tests.support.states import mesh_state

MONGO = "outbound|27017||mongo.default.svc.cluster.local"

SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: mongo, namespace: default}
spec:
  clusterIP: None
  selector: {app: mongo}
  ports: [{name: tcp, port: 27017}]
"""


def _entry(name: str, ip: str, sidecar: bool) -> str:
    labels = "{app: mongo, security.istio.io/tlsMode: istio}" if sidecar else "{app: mongo}"
    account = "\n  serviceAccount: mongo" if sidecar else ""
    return f"""\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: default}}
spec:
  address: {ip}
  labels: {labels}{account}
"""


SIDECAR_0 = _entry("mongo-0", "10.244.0.20", True)
SIDECAR_1 = _entry("mongo-1", "10.244.0.21", True)
PLAIN_1 = _entry("mongo-1", "10.244.0.21", False)


def _proxy(sds: bool = True, mode: str = "REDIRECT") -> Any:
    meta: dict[str, Any] = {"NAMESPACE": "default", "LABELS": {"app": "web"}, "INTERCEPTION_MODE": mode}
    if sds:
        meta["SDS"] = "true"
    return parse_proxy("sidecar~10.244.0.5~web-1.default~default.svc.cluster.local", meta)


def _mongo(state: MeshState, proxy: Any = None, translator: Translator | None = None) -> dict[str, Any]:
    res = (translator or Translator()).generate(state, proxy or _proxy(), TypeUrl.CLUSTER)
    return json_format.MessageToDict(res.index[MONGO].message(), preserving_proto_field_name=True)


def _tls(cluster: dict[str, Any]) -> dict[str, Any]:
    sock = cluster["transport_socket"]
    assert sock["name"] == "envoy.transport_sockets.tls"
    tls: dict[str, Any] = sock["typed_config"]
    return tls


def test_all_endpoints_with_sidecars_get_the_istio_mtls_socket_itself() -> None:
    mongo = _mongo(mesh_state(SERVICE, SIDECAR_0, SIDECAR_1))
    assert mongo["type"] == "ORIGINAL_DST"
    assert "transport_socket_matches" not in mongo
    tls = _tls(mongo)
    assert tls["sni"] == "outbound_.27017_._.mongo.default.svc.cluster.local"
    common = tls["common_tls_context"]
    assert common["alpn_protocols"] == ["istio-peer-exchange", "istio"]
    assert [s["name"] for s in common["tls_certificate_sds_secret_configs"]] == ["default"]
    validation = common["combined_validation_context"]
    assert validation["validation_context_sds_secret_config"]["name"] == "ROOTCA"
    sans = validation["default_validation_context"]["match_typed_subject_alt_names"]
    assert sans == [{"san_type": "URI", "matcher": {"exact": "spiffe://cluster.local/ns/default/sa/mongo"}}]


def test_any_endpoint_without_a_sidecar_makes_the_port_plaintext() -> None:
    mongo = _mongo(mesh_state(SERVICE, SIDECAR_0, PLAIN_1))
    assert mongo["type"] == "ORIGINAL_DST"
    assert "transport_socket" not in mongo and "transport_socket_matches" not in mongo


def test_no_endpoints_is_plaintext() -> None:
    mongo = _mongo(mesh_state(SERVICE))
    assert "transport_socket" not in mongo and "transport_socket_matches" not in mongo


def test_namespace_disable_is_plaintext() -> None:
    disable = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: DISABLE}}
"""
    mongo = _mongo(mesh_state(SERVICE, SIDECAR_0, SIDECAR_1, disable))
    assert "transport_socket" not in mongo and "transport_socket_matches" not in mongo


def test_destination_rule_istio_mutual_is_kept_whatever_the_endpoints() -> None:
    dr = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: mongo, namespace: default}
spec:
  host: mongo.default.svc.cluster.local
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
"""
    mongo = _mongo(mesh_state(SERVICE, SIDECAR_0, PLAIN_1, dr))
    assert _tls(mongo)["sni"] == "outbound_.27017_._.mongo.default.svc.cluster.local"
    assert "transport_socket_matches" not in mongo


def test_proxy_without_workload_certificates_stays_plaintext() -> None:
    mongo = _mongo(mesh_state(SERVICE, SIDECAR_0, SIDECAR_1), _proxy(sds=False))
    assert "transport_socket" not in mongo and "transport_socket_matches" not in mongo


def test_capture_none_keeps_the_per_endpoint_transport_socket_matches() -> None:
    mongo = _mongo(mesh_state(SERVICE, SIDECAR_0, PLAIN_1), _proxy(mode="NONE"))
    assert mongo["type"] == "EDS"
    assert [m["name"] for m in mongo["transport_socket_matches"]] == ["tlsMode-istio", "tlsMode-disabled"]


def test_endpoint_change_alone_changes_the_decision() -> None:
    """A pod gaining its sidecar changes only endpoints: the next state's cluster
    (built from carried-over pieces) must follow it both ways."""
    translator = Translator()
    before = mesh_state(SERVICE, SIDECAR_0, PLAIN_1)
    assert "transport_socket" not in _mongo(before, translator=translator)
    after = mesh_state(SERVICE, SIDECAR_0, SIDECAR_1)
    translator.context(after)
    assert _tls(_mongo(after, translator=translator))["sni"].endswith("mongo.default.svc.cluster.local")
    again = mesh_state(SERVICE, SIDECAR_0, PLAIN_1)
    translator.context(again)
    assert "transport_socket" not in _mongo(again, translator=translator)
