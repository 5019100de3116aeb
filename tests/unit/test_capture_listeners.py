"""Listeners and clusters for sidecars whose traffic iptables captures
(INTERCEPTION_MODE REDIRECT/TPROXY), named and shaped as istiod builds them."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from istiod_py.model import MeshConfig, MeshState, parse_proxy
from istiod_py.translate.generate import Translator
from istiod_py.xds.types import TypeUrl
from tests.support.states import mesh_state

SERVICES = """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.96.0.20
  selector: {app: web}
  ports: [{name: http, port: 8080}, {name: tcp-admin, port: 7070}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec:
  clusterIP: 10.96.0.30
  selector: {app: db}
  ports: [{name: tcp, port: 5432}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: web-1, namespace: default}
spec: {address: 10.244.0.5, labels: {app: web}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: db-1, namespace: default}
spec: {address: 10.244.0.6, labels: {app: db}}
"""


def _proxy(mode: str = "REDIRECT", sds: bool = False, ip: str = "10.244.0.5", app: str = "web") -> Any:
    meta: dict[str, Any] = {"NAMESPACE": "default", "LABELS": {"app": app}, "INTERCEPTION_MODE": mode}
    if sds:
        meta["SDS"] = "true"
    return parse_proxy(f"sidecar~{ip}~{app}-1.default~default.svc.cluster.local", meta)


def _resources(state: MeshState, proxy: Any, type_url: str) -> dict[str, dict[str, Any]]:
    res = Translator().generate(state, proxy, type_url)
    return {
        name: json_format.MessageToDict(b.message(), preserving_proto_field_name=True) for name, b in res.index.items()
    }


def _chains(lst: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(c.get("name", ""), c.get("filter_chain_match", {})) for c in lst["filter_chains"]]


def test_redirect_proxy_gets_virtual_listeners_and_no_bound_inbound_listener() -> None:
    listeners = _resources(mesh_state(SERVICES), _proxy(), TypeUrl.LISTENER)
    # HTTP ports: one wildcard listener; opaque ports of services with a VIP: one per VIP.
    assert {"virtualOutbound", "virtualInbound", "0.0.0.0_8080", "10.96.0.20_7070", "10.96.0.30_5432"} <= set(listeners)
    assert "0.0.0.0_7070" not in listeners and "0.0.0.0_5432" not in listeners
    # The app keeps its port: nothing inbound binds it.
    assert not any(n.startswith("10.244.0.5_") for n in listeners)
    vo = listeners["virtualOutbound"]
    assert vo["use_original_dst"] is True
    assert vo["address"]["socket_address"]["port_value"] == 15001
    assert [n for n, _ in _chains(vo)] == ["virtualOutbound-blackhole", "virtualOutbound-catchall-tcp"]
    assert _chains(vo)[0][1] == {"destination_port": 15001}
    catchall = vo["filter_chains"][1]["filters"][0]["typed_config"]
    assert catchall["cluster"] == "PassthroughCluster"
    for name in ("0.0.0.0_8080", "10.96.0.30_5432"):
        assert listeners[name]["bind_to_port"] is False
    db = listeners["10.96.0.30_5432"]
    assert db["address"]["socket_address"] == {"address": "10.96.0.30", "port_value": 5432}
    assert [c.get("filter_chain_match", {}) for c in db["filter_chains"]] == [{}]
    assert (
        db["filter_chains"][0]["filters"][0]["typed_config"]["cluster"] == "outbound|5432||db.default.svc.cluster.local"
    )


def test_virtual_inbound_chains_per_port_and_passthrough_plaintext() -> None:
    vi = _resources(mesh_state(SERVICES), _proxy(), TypeUrl.LISTENER)["virtualInbound"]
    assert vi["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 15006}
    assert vi["traffic_direction"] == "INBOUND"
    chains = _chains(vi)
    assert chains[0] == ("virtualInbound-blackhole", {"destination_port": 15006})
    # Without workload certificates: plaintext only (DISABLE), sniffed passthrough.
    assert chains[1] == (
        "virtualInbound-catchall-http",
        {"transport_protocol": "raw_buffer", "application_protocols": ["http/1.1", "h2c"]},
    )
    assert chains[2] == ("virtualInbound", {"transport_protocol": "raw_buffer"})
    assert ("0.0.0.0_7070", {"destination_port": 7070, "transport_protocol": "raw_buffer"}) in chains
    assert ("0.0.0.0_8080", {"destination_port": 8080, "transport_protocol": "raw_buffer"}) in chains
    filters = [f["name"] for f in vi["listener_filters"]]
    assert filters == ["envoy.filters.listener.original_dst", "envoy.filters.listener.http_inspector"]
    # HTTP sniffing only where a chain needs it: not on declared ports, nor on 15006.
    ranges = vi["listener_filters"][1]["filter_disabled"]["or_match"]["rules"]
    assert [r["destination_port_range"]["start"] for r in ranges] == [7070, 8080, 15006]


def test_permissive_and_strict_passthrough_chains() -> None:
    strict = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: web, namespace: default}
spec: {selector: {matchLabels: {app: web}}, mtls: {mode: STRICT}}
"""
    permissive = _resources(mesh_state(SERVICES), _proxy(sds=True), TypeUrl.LISTENER)["virtualInbound"]
    names = [n for n, m in _chains(permissive) if "destination_port" not in m]
    assert names == ["virtualInbound-catchall-http"] * 2 + ["virtualInbound"] * 3
    tls_matches = [m for _, m in _chains(permissive) if m.get("transport_protocol") == "tls"]
    assert {"transport_protocol": "tls", "application_protocols": ["istio-peer-exchange", "istio"]} in tls_matches
    # Plain TLS to an opaque port is passed through (PERMISSIVE), not closed.
    assert {"destination_port": 7070, "transport_protocol": "tls"} in tls_matches
    lf = {f["name"]: f for f in permissive["listener_filters"]}
    # TLS inspection is on by default (passthrough needs it) and off on the blackhole port.
    assert lf["envoy.filters.listener.tls_inspector"]["filter_disabled"] == {
        "destination_port_range": {"start": 15006, "end": 15007}
    }

    vi = _resources(mesh_state(SERVICES, strict), _proxy(sds=True), TypeUrl.LISTENER)["virtualInbound"]
    passthrough = [(n, m) for n, m in _chains(vi) if "destination_port" not in m]
    assert passthrough == [
        (
            "virtualInbound-catchall-http",
            {"transport_protocol": "tls", "application_protocols": ["istio-http/1.0", "istio-http/1.1", "istio-h2"]},
        ),
        ("virtualInbound", {"transport_protocol": "tls"}),
    ]
    # STRICT: no plaintext chain anywhere, every chain but the blackhole terminates TLS.
    assert all(m.get("transport_protocol") == "tls" for n, m in _chains(vi) if n != "virtualInbound-blackhole")
    assert all("transport_socket" in c for c in vi["filter_chains"][1:])


def test_inbound_clusters_are_original_dst_from_127_0_0_6() -> None:
    clusters = _resources(mesh_state(SERVICES), _proxy(), TypeUrl.CLUSTER)
    for name in ("inbound|8080||", "inbound|7070||", "InboundPassthroughCluster"):
        c = clusters[name]
        assert c["type"] == "ORIGINAL_DST" and c["lb_policy"] == "CLUSTER_PROVIDED"
        assert c["upstream_bind_config"]["source_address"] == {"address": "127.0.0.6", "port_value": 0}
    assert {"BlackHoleCluster", "PassthroughCluster"} <= set(clusters)


def test_sidecar_ingress_default_endpoint_stays_static() -> None:
    sidecar = """\
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: web, namespace: default}
spec:
  workloadSelector: {labels: {app: web}}
  ingress:
  - port: {number: 8080, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:18080
"""
    state = mesh_state(SERVICES, sidecar)
    clusters = _resources(state, _proxy(), TypeUrl.CLUSTER)
    c = clusters["inbound|8080||"]
    assert c["type"] == "STATIC"
    addr = c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert addr == {"address": "127.0.0.1", "port_value": 18080}
    assert "inbound|7070||" not in clusters  # the Sidecar's ingress list replaces the service ports


SUBNET_ENTRY = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: legacy-db, namespace: default}
spec:
  hosts: [legacy-db.internal]
  addresses: [10.200.0.0/16]
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  resolution: NONE
"""


def test_registry_only_blackholes_unknown_destinations() -> None:
    state = mesh_state(SERVICES, SUBNET_ENTRY, mesh=MeshConfig(outbound_traffic_policy="REGISTRY_ONLY"))
    listeners = _resources(state, _proxy(), TypeUrl.LISTENER)
    # A subnet is not an address of its own: it stays a matched chain on the wildcard listener.
    ranges = listeners["0.0.0.0_5432"]["filter_chains"][0]["filter_chain_match"]["prefix_ranges"]
    assert ranges == [{"address_prefix": "10.200.0.0", "prefix_len": 16}]
    catchall = listeners["virtualOutbound"]["filter_chains"][1]["filters"][0]["typed_config"]
    assert catchall["cluster"] == "BlackHoleCluster"
    fallthrough = listeners["0.0.0.0_5432"]["default_filter_chain"]
    assert fallthrough["name"] == "PassthroughFilterChain"
    assert fallthrough["filters"][0]["typed_config"]["cluster"] == "BlackHoleCluster"


def test_tproxy_listeners_are_transparent_and_restore_the_source() -> None:
    listeners = _resources(mesh_state(SERVICES), _proxy("TPROXY"), TypeUrl.LISTENER)
    assert listeners["virtualOutbound"]["transparent"] is True
    vi = listeners["virtualInbound"]
    assert vi["transparent"] is True
    src = [f for f in vi["listener_filters"] if f["name"] == "envoy.filters.listener.original_src"]
    assert src and src[0]["typed_config"]["mark"] == 1337


def test_capture_none_is_untouched() -> None:
    listeners = _resources(mesh_state(SERVICES), _proxy("NONE"), TypeUrl.LISTENER)
    assert "virtualOutbound" not in listeners and "virtualInbound" not in listeners
    clusters = _resources(mesh_state(SERVICES), _proxy("NONE"), TypeUrl.CLUSTER)
    # InboundPassthroughCluster is built for every sidecar, as istiod does (issue 10);
    # what capture adds on top is ORIGINAL_DST inbound clusters, which NONE never gets.
    assert not any(c.startswith("inbound|") and c_type == "ORIGINAL_DST" for c, c_type in
                   ((n, v.get("type")) for n, v in clusters.items()))  # fmt: skip


HEADLESS = """\
apiVersion: v1
kind: Service
metadata: {name: mongo, namespace: default}
spec:
  clusterIP: None
  selector: {app: mongo}
  ports: [{name: tcp, port: 27017}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: mongo-0, namespace: default}
spec: {address: 10.244.0.20, labels: {app: mongo}}
"""

MONGO_1 = """\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: mongo-1, namespace: default}
spec: {address: 10.244.0.21, labels: {app: mongo}}
"""


def test_headless_service_gets_a_listener_per_endpoint_and_original_dst() -> None:
    translator = Translator()
    state = mesh_state(SERVICES, HEADLESS)
    names = set(translator.generate(state, _proxy(), TypeUrl.LISTENER).index)
    assert "10.244.0.20_27017" in names and "0.0.0.0_27017" not in names
    clusters = _resources(state, _proxy(), TypeUrl.CLUSTER)
    mongo = clusters["outbound|27017||mongo.default.svc.cluster.local"]
    assert mongo["type"] == "ORIGINAL_DST" and mongo["lb_policy"] == "CLUSTER_PROVIDED"
    assert "eds_cluster_config" not in mongo
    # A new endpoint is a new listener, even though nothing but endpoints changed.
    later = mesh_state(SERVICES, HEADLESS, MONGO_1)
    translator.context(state)
    names = set(translator.generate(later, _proxy(), TypeUrl.LISTENER).index)
    assert {"10.244.0.20_27017", "10.244.0.21_27017"} <= names
    # captureMode NONE keeps the service's EDS cluster.
    none = _resources(state, _proxy("NONE"), TypeUrl.CLUSTER)
    assert none["outbound|27017||mongo.default.svc.cluster.local"]["type"] == "EDS"


PORT_FILTER = """\
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: inbound-8080-lua, namespace: default}
spec:
  workloadSelector: {labels: {app: web}}
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_INBOUND
      listener:
        portNumber: 8080
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter: {name: envoy.filters.http.router}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.lua
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
          default_source_code: {inline_string: "function envoy_on_request(h) end"}
"""


def test_envoyfilter_port_number_selects_virtual_inbound_chains() -> None:
    """As istiod: on virtualInbound a listener portNumber matches the chains'
    destination port (the app's port), not the listener's 15006."""
    vi = _resources(mesh_state(SERVICES, PORT_FILTER), _proxy(), TypeUrl.LISTENER)["virtualInbound"]
    patched = set()
    for fc in vi["filter_chains"]:
        for f in fc["filters"]:
            names = [h["name"] for h in f.get("typed_config", {}).get("http_filters", [])]
            if "envoy.filters.http.lua" in names:
                assert names.index("envoy.filters.http.lua") == names.index("envoy.filters.http.router") - 1
                patched.add(fc.get("filter_chain_match", {}).get("destination_port", 0))
    assert patched == {8080}


UNDECLARED = """\
apiVersion: v1
kind: Service
metadata: {name: web-metrics, namespace: default}
spec:
  clusterIP: 10.96.0.21
  selector: {app: web}
  ports: [{name: metrics, port: 9100}]
"""


def test_port_without_declared_protocol_is_sniffed_inbound() -> None:
    vi = _resources(mesh_state(SERVICES, UNDECLARED), _proxy(), TypeUrl.LISTENER)["virtualInbound"]
    chains = [(n, m) for n, m in _chains(vi) if m.get("destination_port") == 9100]
    assert chains == [
        (
            "0.0.0.0_9100",
            {
                "destination_port": 9100,
                "transport_protocol": "raw_buffer",
                "application_protocols": ["http/1.1", "h2c"],
            },
        ),
        ("0.0.0.0_9100", {"destination_port": 9100, "transport_protocol": "raw_buffer"}),
    ]
    kinds = [
        c["filters"][-1]["name"]
        for c in vi["filter_chains"]
        if c.get("filter_chain_match", {}).get("destination_port") == 9100
    ]
    assert kinds == ["envoy.filters.network.http_connection_manager", "envoy.filters.network.tcp_proxy"]
    http_inspector = next(f for f in vi["listener_filters"] if f["name"] == "envoy.filters.listener.http_inspector")
    disabled = [r["destination_port_range"]["start"] for r in http_inspector["filter_disabled"]["or_match"]["rules"]]
    assert 9100 not in disabled and 8080 in disabled
    # A port named for its protocol is not sniffed.
    assert all(m.get("application_protocols") is None for n, m in _chains(vi) if m.get("destination_port") == 7070)


def test_port_without_declared_protocol_is_sniffed_outbound() -> None:
    state = mesh_state(SERVICES, UNDECLARED)
    listeners = _resources(state, _proxy(ip="10.244.0.99", app="client"), TypeUrl.LISTENER)
    assert "10.96.0.21_9100" not in listeners  # a sniffing listener keeps its address chains
    lst = listeners["0.0.0.0_9100"]
    matches = [
        (c["filters"][-1]["name"].rsplit(".", 1)[-1], c.get("filter_chain_match", {})) for c in lst["filter_chains"]
    ]
    vip = [{"address_prefix": "10.96.0.21", "prefix_len": 32}]
    http_alpns = ["http/1.0", "http/1.1", "h2c"]
    assert matches == [
        ("http_connection_manager", {"transport_protocol": "raw_buffer", "application_protocols": http_alpns}),
        (
            "http_connection_manager",
            {"prefix_ranges": vip, "transport_protocol": "raw_buffer", "application_protocols": http_alpns},
        ),
        ("tcp_proxy", {"prefix_ranges": vip, "transport_protocol": "raw_buffer"}),
    ]
    assert [f["name"] for f in lst["listener_filters"]] == ["envoy.filters.listener.http_inspector"]
    routes = _resources(state, _proxy(ip="10.244.0.99", app="client"), TypeUrl.ROUTE)
    assert "web-metrics.default.svc.cluster.local:9100" in [v["name"] for v in routes["9100"]["virtual_hosts"]]
    # captureMode NONE keeps the port opaque: no route configuration, no HTTP chain.
    none = Translator().generate(state, _proxy("NONE", ip="10.244.0.99", app="client"), TypeUrl.ROUTE)
    assert "9100" not in none.index


CAPTURE_NONE_ENTRIES = """\
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: web, namespace: default}
spec:
  workloadSelector: {labels: {app: web}}
  ingress:
  - port: {number: 8080, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:18080
    captureMode: NONE
  - port: {number: 7070, protocol: TCP, name: tcp-admin}
  egress:
  - port: {number: 5432, protocol: TCP, name: tcp}
    captureMode: NONE
    hosts: ["./*"]
  - hosts: ["./*"]
"""


def test_sidecar_capture_mode_none_entries_bind_their_ports() -> None:
    """As istiod's getBindToPort: a Sidecar entry with captureMode NONE gets a listener
    that binds (ingress on the proxy's address, egress on 127.0.0.1), the rest stays captured."""
    state = mesh_state(SERVICES, CAPTURE_NONE_ENTRIES)
    listeners = _resources(state, _proxy(), TypeUrl.LISTENER)
    bound_in = listeners["10.244.0.5_8080"]
    assert "bind_to_port" not in bound_in
    assert bound_in["address"]["socket_address"] == {"address": "10.244.0.5", "port_value": 8080}
    vi_ports = {m.get("destination_port") for _, m in _chains(listeners["virtualInbound"])}
    assert 7070 in vi_ports and 8080 not in vi_ports
    bound_out = listeners["127.0.0.1_5432"]
    assert "bind_to_port" not in bound_out
    assert listeners["0.0.0.0_8080"]["bind_to_port"] is False
    clusters = _resources(state, _proxy(), TypeUrl.CLUSTER)
    assert clusters["inbound|8080||"]["type"] == "STATIC"
    assert clusters["inbound|7070||"]["type"] == "ORIGINAL_DST"


PORT_LEVEL = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: web, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
  mtls: {mode: STRICT}
  portLevelMtls:
    "9901": {mode: DISABLE}
    "8080": {mode: PERMISSIVE}
"""


def test_port_level_mode_on_an_undeclared_port_gets_its_own_passthrough_chains() -> None:
    vi = _resources(mesh_state(SERVICES, PORT_LEVEL), _proxy(sds=True), TypeUrl.LISTENER)["virtualInbound"]
    at_9901 = [(n, m) for n, m in _chains(vi) if m.get("destination_port") == 9901]
    assert at_9901 == [
        (
            "virtualInbound-catchall-http",
            {
                "destination_port": 9901,
                "transport_protocol": "raw_buffer",
                "application_protocols": ["http/1.1", "h2c"],
            },
        ),
        ("virtualInbound", {"destination_port": 9901, "transport_protocol": "raw_buffer"}),
    ]
    # 8080 is a service port: its own chains carry its mode, no passthrough copy.
    assert all(n == "0.0.0.0_8080" for n, m in _chains(vi) if m.get("destination_port") == 8080)
