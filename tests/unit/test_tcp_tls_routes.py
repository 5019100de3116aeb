"""Sidecar outbound listeners for opaque TCP and TLS: VirtualService `tcp` and
`tls` routes (weights, subsets, matches), several services on one port, SNI
chains, destination prefix ranges, and sniffing where HTTP and TCP meet."""

from __future__ import annotations

from typing import Any

from envoy.config.listener.v3 import listener_pb2
from envoy.config.listener.v3.listener_components_pb2 import FilterChain
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from istiod_py.model import MeshState, Proxy, parse_proxy
from istiod_py.translate.generate import Translator
from istiod_py.xds.types import TypeUrl
from tests.support.states import mesh_state

BIND = "127.9.9.9"


def svc(name: str, port: int, port_name: str, ns: str = "default") -> str:
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: {port_name}, port: {port}}}]
"""


def sidecar(bind: str = BIND) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: client, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: client}}}}
  egress:
  - bind: {bind}
    hosts: ["*/*"]
"""


SUBSETS = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db, namespace: default}
spec:
  host: db
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""


def state_of(*docs: str) -> MeshState:
    return mesh_state(*docs)


def client(labels: dict[str, str] | None = None) -> Proxy:
    return parse_proxy(
        "sidecar~127.9.1.1~client.default~default.svc.cluster.local",
        {"NAMESPACE": "default", "LABELS": labels or {"app": "client"}, "INTERCEPTION_MODE": "NONE"},
    )


def listeners(*docs: str, proxy: Proxy | None = None, translator: Translator | None = None,
              state: MeshState | None = None) -> dict[str, listener_pb2.Listener]:  # fmt: skip
    res = (translator or Translator()).generate(state or state_of(*docs), proxy or client(), TypeUrl.LISTENER)
    return {name: b.message() for name, b in res.index.items()}  # type: ignore[misc]


def tcp_of(fc: FilterChain) -> tcp_proxy_pb2.TcpProxy:
    tp = tcp_proxy_pb2.TcpProxy()
    f = [f for f in fc.filters if f.name == "envoy.filters.network.tcp_proxy"]
    assert f, fc
    f[0].typed_config.Unpack(tp)
    return tp


def targets(tp: tcp_proxy_pb2.TcpProxy) -> dict[str, int]:
    if tp.cluster:
        return {tp.cluster: 0}
    return {c.name: c.weight for c in tp.weighted_clusters.clusters}


def chains_by_sni(lst: listener_pb2.Listener) -> dict[tuple[str, ...], dict[str, int]]:
    return {tuple(fc.filter_chain_match.server_names): targets(tcp_of(fc)) for fc in lst.filter_chains}


def match_keys(lst: listener_pb2.Listener) -> list[Any]:
    out = []
    for fc in lst.filter_chains:
        m = fc.filter_chain_match
        for r in [f"{p.address_prefix}/{p.prefix_len.value}" for p in m.prefix_ranges] or [""]:
            for n in list(m.server_names) or [""]:
                out.append((r, n, m.transport_protocol, tuple(m.application_protocols)))
    return out


def assert_no_duplicate_matches(lst: listener_pb2.Listener) -> None:
    keys = match_keys(lst)
    assert len(keys) == len(set(keys)), keys


DB = "db.default.svc.cluster.local"


def test_tcp_weights_and_subsets() -> None:
    vs = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: default}
spec:
  hosts: [db]
  tcp:
  - route:
    - {destination: {host: db, subset: v1}, weight: 70}
    - {destination: {host: db, subset: v2}, weight: 30}
    - {destination: {host: db, subset: v3}, weight: 0}
"""
    lst = listeners(svc("db", 3306, "tcp"), SUBSETS, sidecar(), vs)[f"{BIND}_3306"]
    assert len(lst.filter_chains) == 1
    tp = tcp_of(lst.filter_chains[0])
    # zero weights are left out (Envoy requires weight >= 1), as istiod does
    assert targets(tp) == {f"outbound|3306|v1|{DB}": 70, f"outbound|3306|v2|{DB}": 30}
    assert tp.stat_prefix == "db.default"
    assert (
        lst.filter_chains[0]
        .metadata.filter_metadata["istio"]["config"]
        .endswith("namespaces/default/virtual-service/db")
    )
    assert not lst.listener_filters


def test_tcp_route_to_one_subset_and_default_without_vs() -> None:
    vs = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: default}
spec:
  hosts: [db.default.svc.cluster.local]
  tcp:
  - route: [{destination: {host: db, subset: v2, port: {number: 3306}}}]
"""
    lst = listeners(svc("db", 3306, "tcp"), SUBSETS, sidecar(), vs)[f"{BIND}_3306"]
    tp = tcp_of(lst.filter_chains[0])
    assert tp.cluster == f"outbound|3306|v2|{DB}" and tp.stat_prefix == tp.cluster
    plain = listeners(svc("db", 3306, "tcp"), sidecar())[f"{BIND}_3306"]
    assert targets(tcp_of(plain.filter_chains[0])) == {f"outbound|3306||{DB}": 0}


MATCHED_VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: default}
spec:
  hosts: [db]
  tcp:
  - match: [{port: 3306, sourceLabels: {version: canary}}]
    route: [{destination: {host: db, subset: v2}}]
  - match: [{port: 9999}]
    route: [{destination: {host: db, subset: v1}}]
"""


def test_tcp_match_source_labels_and_port_select_per_proxy() -> None:
    docs = (svc("db", 3306, "tcp"), SUBSETS, sidecar(), MATCHED_VS)
    state = state_of(*docs)
    tr = Translator()  # one translator: the memoized listeners must still differ by labels
    canary = listeners(state=state, translator=tr, proxy=client({"app": "client", "version": "canary"}))
    other = listeners(state=state, translator=tr, proxy=client({"app": "client"}))
    assert targets(tcp_of(canary[f"{BIND}_3306"].filter_chains[0])) == {f"outbound|3306|v2|{DB}": 0}
    # port 9999 does not match: the default route
    assert targets(tcp_of(other[f"{BIND}_3306"].filter_chains[0])) == {f"outbound|3306||{DB}": 0}


def test_tcp_match_gateways_other_than_mesh_do_not_apply() -> None:
    vs = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: default}
spec:
  hosts: [db]
  gateways: [mesh, some-gateway]
  tcp:
  - match: [{gateways: [some-gateway]}]
    route: [{destination: {host: db, subset: v1}}]
  - match: [{gateways: [mesh]}]
    route: [{destination: {host: db, subset: v2}}]
"""
    lst = listeners(svc("db", 3306, "tcp"), SUBSETS, sidecar(), vs)[f"{BIND}_3306"]
    assert [targets(tcp_of(fc)) for fc in lst.filter_chains] == [{f"outbound|3306|v2|{DB}": 0}]


def test_tcp_destination_subnets_add_prefix_ranges_and_keep_the_default() -> None:
    vs = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: default}
spec:
  hosts: [db]
  tcp:
  - match: [{destinationSubnets: [10.1.0.0/16, 10.2.0.1]}]
    route: [{destination: {host: db, subset: v1}}]
"""
    lst = listeners(svc("db", 3306, "tcp"), SUBSETS, sidecar(), vs)[f"{BIND}_3306"]
    assert len(lst.filter_chains) == 2
    ranges = [(p.address_prefix, p.prefix_len.value) for p in lst.filter_chains[0].filter_chain_match.prefix_ranges]
    assert ranges == [("10.1.0.0", 16), ("10.2.0.1", 32)]
    assert targets(tcp_of(lst.filter_chains[0])) == {f"outbound|3306|v1|{DB}": 0}
    assert not lst.filter_chains[1].filter_chain_match.prefix_ranges
    assert targets(tcp_of(lst.filter_chains[1])) == {f"outbound|3306||{DB}": 0}


def test_two_tcp_services_on_one_bind_the_first_by_hostname_wins() -> None:
    docs = (svc("zeta", 5000, "tcp"), svc("alpha", 5000, "tcp"), sidecar())
    lst = listeners(*docs)[f"{BIND}_5000"]
    assert len(lst.filter_chains) == 1
    assert targets(tcp_of(lst.filter_chains[0])) == {"outbound|5000||alpha.default.svc.cluster.local": 0}


ADDRESSED = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext-a, namespace: default}
spec:
  hosts: [a.example.internal]
  addresses: [240.0.0.1]
  ports: [{number: 6000, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 127.8.0.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext-b, namespace: default}
spec:
  hosts: [b.example.internal]
  addresses: [240.0.1.0/24]
  ports: [{number: 6000, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 127.8.0.2}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext-c, namespace: default}
spec:
  hosts: [c.example.internal]
  ports: [{number: 6000, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 127.8.0.3}]
"""


def test_wildcard_bind_tells_addressed_services_apart_by_destination() -> None:
    lst = listeners(ADDRESSED, sidecar("0.0.0.0"))["0.0.0.0_6000"]
    got = {
        tuple(f"{p.address_prefix}/{p.prefix_len.value}" for p in fc.filter_chain_match.prefix_ranges): targets(
            tcp_of(fc)
        )
        for fc in lst.filter_chains
    }
    assert got == {
        ("240.0.0.1/32",): {"outbound|6000||a.example.internal": 0},
        ("240.0.1.0/24",): {"outbound|6000||b.example.internal": 0},
        (): {"outbound|6000||c.example.internal": 0},
    }
    # one bind address: no destination to tell them apart, the first host keeps the port
    single = listeners(ADDRESSED, sidecar())[f"{BIND}_6000"]
    assert [targets(tcp_of(fc)) for fc in single.filter_chains] == [{"outbound|6000||a.example.internal": 0}]


def tls_entry(name: str, host: str, port: int = 8443, addresses: str = "") -> str:
    addr = f"\n  addresses: [{addresses}]" if addresses else ""
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{host}]{addr}
  ports: [{{number: {port}, name: tls, protocol: TLS}}]
  resolution: STATIC
  endpoints: [{{address: 127.8.1.1}}]
"""


def test_tls_services_share_a_port_by_sni() -> None:
    docs = (tls_entry("a", "a.example.com"), tls_entry("b", "b.example.com"), sidecar())
    lst = listeners(*docs)[f"{BIND}_8443"]
    assert [f.name for f in lst.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    assert chains_by_sni(lst) == {
        ("a.example.com",): {"outbound|8443||a.example.com": 0},
        ("b.example.com",): {"outbound|8443||b.example.com": 0},
        # no (or another) SNI: the first service by hostname, as plain TCP would
        (): {"outbound|8443||a.example.com": 0},
    }
    assert_no_duplicate_matches(lst)


def test_tls_routes_by_sni_hosts_with_weights_and_dedupe() -> None:
    vs = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tls-split, namespace: default}
spec:
  hosts: ["*.example.com"]
  tls:
  - match: [{sniHosts: [a.example.com, shared.example.com], port: 8443}]
    route:
    - {destination: {host: a.example.com}, weight: 50}
    - {destination: {host: b.example.com}, weight: 50}
  - match: [{sniHosts: [shared.example.com]}]
    route: [{destination: {host: b.example.com}}]
  - match: [{sniHosts: [b.example.com], sourceLabels: {app: nobody}}]
    route: [{destination: {host: a.example.com}}]
"""
    docs = (tls_entry("a", "a.example.com"), tls_entry("b", "b.example.com"), sidecar(), vs)
    lst = listeners(*docs)[f"{BIND}_8443"]
    assert_no_duplicate_matches(lst)
    got = chains_by_sni(lst)
    split = {"outbound|8443||a.example.com": 50, "outbound|8443||b.example.com": 50}
    # the VS applies to both services; shared.example.com belongs to the first chain that claims it
    assert got[("a.example.com", "shared.example.com")] == split
    assert ("shared.example.com",) not in got
    # The sourceLabels match does not apply to this proxy. The VS still has tls routes that
    # apply to b (the first match), so b gets no default SNI chain (istiod: hasTLSMatch).
    assert ("b.example.com",) not in got
    assert got[()] == {"outbound|8443||a.example.com": 0}


def test_tls_service_with_its_own_address_on_a_wildcard_bind_needs_no_sni() -> None:
    docs = (tls_entry("a", "a.example.com", addresses="240.0.0.9"), tls_entry("b", "b.example.com"),
            sidecar("0.0.0.0"))  # fmt: skip
    lst = listeners(*docs)["0.0.0.0_8443"]
    assert_no_duplicate_matches(lst)
    by_range: dict[tuple[str, ...], list[tuple[tuple[str, ...], dict[str, int]]]] = {}
    for fc in lst.filter_chains:
        key = tuple(p.address_prefix for p in fc.filter_chain_match.prefix_ranges)
        by_range.setdefault(key, []).append((tuple(fc.filter_chain_match.server_names), targets(tcp_of(fc))))
    assert by_range[("240.0.0.9",)] == [((), {"outbound|8443||a.example.com": 0})]
    assert (("b.example.com",), {"outbound|8443||b.example.com": 0}) in by_range[()]


def test_http_and_tcp_services_on_one_port_sniff() -> None:
    docs = (svc("web", 7000, "http"), svc("raw", 7000, "tcp"), sidecar())
    lst = listeners(*docs)[f"{BIND}_7000"]
    assert [f.name for f in lst.listener_filters] == ["envoy.filters.listener.http_inspector"]
    http, tcp = lst.filter_chains
    assert http.filters[-1].name == "envoy.filters.network.http_connection_manager"
    assert http.filter_chain_match.transport_protocol == "raw_buffer"
    assert list(http.filter_chain_match.application_protocols) == ["http/1.0", "http/1.1", "h2c"]
    assert tcp.filter_chain_match.transport_protocol == "raw_buffer"
    assert targets(tcp_of(tcp)) == {"outbound|7000||raw.default.svc.cluster.local": 0}
    assert_no_duplicate_matches(lst)
    # HTTP alone: no inspector, one chain, as before
    only = listeners(svc("web", 7000, "http"), sidecar())[f"{BIND}_7000"]
    assert len(only.filter_chains) == 1 and not only.listener_filters
