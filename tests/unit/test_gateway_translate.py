"""Gateway translation: listener, route and cluster names as istiod makes them,
virtual host domains, TLS contexts, and what is left out."""

from __future__ import annotations

from typing import Any

from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from istiod_py.config.loader import load_text
from istiod_py.model import MeshState, Proxy, parse_proxy
from istiod_py.translate.generate import Translator
from istiod_py.xds.types import TypeUrl
from tests.support.states import mesh_state

GW_IP = "127.9.0.1"

BOOKINFO = """
apiVersion: v1
kind: Service
metadata: {name: productpage, namespace: default}
spec:
  selector: {app: productpage}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: productpage-v1, namespace: default}
spec: {address: 127.9.1.1, labels: {app: productpage}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo, namespace: default}
spec:
  hosts: ["*"]
  gateways: [bookinfo-gateway]
  http:
  - match:
    - uri: {exact: /productpage}
    - uri: {prefix: /static}
    route:
    - destination: {host: productpage, port: {number: 9080}}
"""


def state_of(text: str) -> MeshState:
    return mesh_state(text)


def router(labels: dict[str, str] | None = None, ip: str = GW_IP, ns: str = "istio-system") -> Proxy:
    return parse_proxy(
        f"router~{ip}~gw-1.{ns}~{ns}.svc.cluster.local",
        {"NAMESPACE": ns, "LABELS": labels or {"istio": "ingressgateway"}, "INTERCEPTION_MODE": "NONE"},
    )


def generate(state: MeshState, proxy: Proxy, type_url: str) -> dict[str, Any]:
    res = Translator().generate(state, proxy, type_url)
    return {name: b.message() for name, b in res.index.items()}


def hcm_of(lst: listener_pb2.Listener, chain: int = 0) -> hcm.HttpConnectionManager:
    m = hcm.HttpConnectionManager()
    lst.filter_chains[chain].filters[0].typed_config.Unpack(m)
    return m


def test_bookinfo_gateway_shape() -> None:
    st = state_of(BOOKINFO)
    px = router()
    lds = generate(st, px, TypeUrl.LISTENER)
    assert list(lds) == [f"{GW_IP}_8080"]
    lst = lds[f"{GW_IP}_8080"]
    assert lst.address.socket_address.address == GW_IP
    assert lst.address.socket_address.port_value == 8080
    assert hcm_of(lst).rds.route_config_name == "http.8080"
    rds = generate(st, px, TypeUrl.ROUTE)
    rc: route_pb2.RouteConfiguration = rds["http.8080"]
    assert [vh.name for vh in rc.virtual_hosts] == ["*:8080"]
    vh = rc.virtual_hosts[0]
    assert list(vh.domains) == ["*"]
    assert vh.routes[0].match.path == "/productpage"
    assert vh.routes[1].match.prefix == "/static"
    assert vh.routes[0].route.cluster == "outbound|9080||productpage.default.svc.cluster.local"
    cds = generate(st, px, TypeUrl.CLUSTER)
    assert "outbound|9080||productpage.default.svc.cluster.local" in cds
    eds = generate(st, px, TypeUrl.ENDPOINT)
    assert "outbound|9080||productpage.default.svc.cluster.local" in eds


def test_unselected_proxy_gets_no_listeners_and_sidecars_unaffected() -> None:
    st = state_of(BOOKINFO)
    assert generate(st, router({"istio": "egressgateway"}), TypeUrl.LISTENER) == {}


def test_no_interception_none_binds_wildcard() -> None:
    st = state_of(BOOKINFO)
    px = parse_proxy(
        f"router~{GW_IP}~gw-1.istio-system~istio-system.svc.cluster.local",
        {"NAMESPACE": "istio-system", "LABELS": {"istio": "ingressgateway"}},
    )
    assert list(generate(st, px, TypeUrl.LISTENER)) == ["0.0.0.0_8080"]


def test_service_port_maps_to_target_port() -> None:
    text = (
        BOOKINFO.replace("number: 8080", "number: 80")
        + f"""
---
apiVersion: v1
kind: Service
metadata: {{name: istio-ingressgateway, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  ports: [{{name: http2, port: 80, targetPort: 8080}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: ingressgateway, namespace: istio-system}}
spec: {{address: {GW_IP}, labels: {{istio: ingressgateway}}}}
"""
    )
    st = state_of(text)
    px = router()
    assert list(generate(st, px, TypeUrl.LISTENER)) == [f"{GW_IP}_8080"]
    rds = generate(st, px, TypeUrl.ROUTE)
    assert list(rds) == ["http.8080"]
    assert rds["http.8080"].virtual_hosts[0].name == "*:80"


HOSTS = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["a.example.com", "other/b.example.com", "nobody.example.com"]
  - port: {number: 8081, name: http-redirect, protocol: HTTP}
    hosts: ["a.example.com"]
    tls: {httpsRedirect: true}
  - port: {number: 8443, name: https-a, protocol: HTTPS}
    hosts: ["a.example.com"]
    tls: {mode: SIMPLE, serverCertificate: /certs/a.pem, privateKey: /certs/a.key}
  - port: {number: 8443, name: https-b, protocol: HTTPS}
    hosts: ["b.example.com"]
    tls: {mode: MUTUAL, serverCertificate: /certs/b.pem, privateKey: /certs/b.key, caCertificates: /certs/ca.pem}
  - port: {number: 9443, name: tls, protocol: TLS}
    hosts: ["secure.example.com"]
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec:
  hosts: [a.example.com]
  gateways: [gw]
  http:
  - route: [{destination: {host: a-svc, port: {number: 80}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: b, namespace: default}
spec:
  hosts: [b.example.com]
  gateways: [default/gw]
  http:
  - route: [{destination: {host: b-svc, port: {number: 80}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: b, namespace: other}
spec:
  hosts: [b.example.com]
  gateways: [default/gw]
  http:
  - route: [{destination: {host: b-svc, port: {number: 80}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: secure, namespace: default}
spec:
  hosts: [secure.example.com]
  gateways: [gw]
  tls:
  - match: [{port: 9443, sniHosts: [secure.example.com]}]
    route: [{destination: {host: secure-svc, port: {number: 443}}}]
"""


def test_hosts_namespaces_and_404_without_virtual_service() -> None:
    st = state_of(HOSTS)
    rds = generate(st, router(), TypeUrl.ROUTE)
    rc = rds["http.8080"]
    by_name = {vh.name: vh for vh in rc.virtual_hosts}
    # nobody.example.com has no VirtualService: no vhost (Envoy answers 404).
    assert set(by_name) == {"a.example.com:8080", "b.example.com:8080"}
    assert list(by_name["a.example.com:8080"].domains) == ["a.example.com", "a.example.com:*"]
    # `other/b.example.com`: only the VirtualService in namespace `other` binds.
    [route] = by_name["b.example.com:8080"].routes
    assert route.route.cluster == "outbound|80||b-svc.other.svc.cluster.local"


def test_https_redirect_requires_tls() -> None:
    st = state_of(HOSTS)
    rc = generate(st, router(), TypeUrl.ROUTE)["http.8081"]
    assert rc.virtual_hosts[0].require_tls == rc.virtual_hosts[0].ALL


def test_https_chains_by_sni_with_tls_contexts() -> None:
    st = state_of(HOSTS)
    lds = generate(st, router(), TypeUrl.LISTENER)
    lst = lds[f"{GW_IP}_8443"]
    assert [f.name for f in lst.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    assert [list(fc.filter_chain_match.server_names) for fc in lst.filter_chains] == [
        ["a.example.com"],
        ["b.example.com"],
    ]
    names = [hcm_of(lst, i).rds.route_config_name for i in range(2)]
    assert names == ["https.8443.https-a.gw.default", "https.8443.https-b.gw.default"]
    simple, mutual = tls_pb2.DownstreamTlsContext(), tls_pb2.DownstreamTlsContext()
    lst.filter_chains[0].transport_socket.typed_config.Unpack(simple)
    lst.filter_chains[1].transport_socket.typed_config.Unpack(mutual)
    assert simple.common_tls_context.tls_certificates[0].certificate_chain.filename == "/certs/a.pem"
    assert simple.common_tls_context.tls_certificates[0].private_key.filename == "/certs/a.key"
    assert not simple.HasField("require_client_certificate")
    assert mutual.require_client_certificate.value is True
    assert mutual.common_tls_context.validation_context.trusted_ca.filename == "/certs/ca.pem"
    rds = generate(st, router(), TypeUrl.ROUTE)
    assert [vh.name for vh in rds["https.8443.https-a.gw.default"].virtual_hosts] == ["a.example.com:8443"]


def test_credential_name_server_gets_sds_over_ads() -> None:
    # credentialName (Kubernetes Secret): as istiod, SDS over the proxy's ADS stream,
    # `kubernetes://NAME` and for MUTUAL the CA as `kubernetes://NAME-cacert`; a
    # Gateway API reference keeps its `kubernetes-gateway://NS/NAME` name.
    text = HOSTS.replace(
        "    tls: {mode: PASSTHROUGH}\n",
        "    tls: {mode: PASSTHROUGH}\n  - port: {number: 8444, name: https-k8s, protocol: HTTPS}\n"
        '    hosts: ["c.example.com"]\n    tls: {mode: SIMPLE, credentialName: c-cert}\n'
        "  - port: {number: 8445, name: https-mtls, protocol: HTTPS}\n"
        '    hosts: ["d.example.com"]\n    tls: {mode: MUTUAL, credentialName: "kubernetes-gateway://gw/d"}\n',
        1,
    )
    result = load_text(text, "test.yaml")
    assert result.errors == []
    lds = generate(state_of(text), router(), TypeUrl.LISTENER)
    for port, cert, ca in ((8444, "kubernetes://c-cert", ""), (8445, "kubernetes-gateway://gw/d", "-cacert")):
        [fc] = lds[f"{GW_IP}_{port}"].filter_chains
        ctx = tls_pb2.DownstreamTlsContext()
        fc.transport_socket.typed_config.Unpack(ctx)
        [sds] = ctx.common_tls_context.tls_certificate_sds_secret_configs
        assert sds.name == cert and sds.sds_config.HasField("ads")
        assert not ctx.common_tls_context.tls_certificates
        vc = ctx.common_tls_context.combined_validation_context.validation_context_sds_secret_config
        assert vc.name == (cert + ca if ca else "")
        assert ctx.require_client_certificate.value == bool(ca)
        if ca:
            assert vc.sds_config.HasField("ads")


def test_passthrough_by_sni_to_tcp_proxy() -> None:
    st = state_of(HOSTS)
    lst = generate(st, router(), TypeUrl.LISTENER)[f"{GW_IP}_9443"]
    [fc] = lst.filter_chains
    assert list(fc.filter_chain_match.server_names) == ["secure.example.com"]
    tp = tcp_proxy_pb2.TcpProxy()
    fc.filters[0].typed_config.Unpack(tp)
    assert tp.cluster == "outbound|443||secure-svc.default.svc.cluster.local"
    assert not fc.HasField("transport_socket")


def test_auto_passthrough_sni_clusters() -> None:
    text = (
        BOOKINFO
        + """
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: cross-network, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 15443, name: tls, protocol: TLS}
    hosts: ["*.local"]
    tls: {mode: AUTO_PASSTHROUGH}
"""
    )
    st = state_of(text)
    lst = generate(st, router(), TypeUrl.LISTENER)[f"{GW_IP}_15443"]
    fc = lst.filter_chains[0]
    assert list(fc.filter_chain_match.server_names) == ["*.local"]
    assert [f.name for f in fc.filters] == ["envoy.filters.network.sni_cluster", "envoy.filters.network.tcp_proxy"]
    cds = generate(st, router(), TypeUrl.CLUSTER)
    dnat = cds["outbound_.9080_._.productpage.default.svc.cluster.local"]
    assert dnat.eds_cluster_config.service_name == "outbound|9080||productpage.default.svc.cluster.local"


def test_egress_gateway_routes_by_gateway_match() -> None:
    text = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: cnn, namespace: default}
spec:
  hosts: [edition.cnn.com]
  ports: [{number: 80, name: http-port, protocol: HTTP}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: istio-egressgateway, namespace: default}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [edition.cnn.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: direct-cnn-through-egress-gateway, namespace: default}
spec:
  hosts: [edition.cnn.com]
  gateways: [istio-egressgateway, mesh]
  http:
  - match: [{gateways: [mesh], port: 80}]
    route: [{destination: {host: istio-egressgateway.istio-system.svc.cluster.local, subset: cnn, port: {number: 80}}}]
  - match: [{gateways: [istio-egressgateway], port: 80}]
    route: [{destination: {host: edition.cnn.com, port: {number: 80}}}]
"""
    st = state_of(text)
    px = router({"istio": "egressgateway"})
    rc = generate(st, px, TypeUrl.ROUTE)["http.80"]
    [vh] = rc.virtual_hosts
    assert vh.name == "edition.cnn.com:80"
    assert [r.route.cluster for r in vh.routes] == ["outbound|80||edition.cnn.com"]


def test_overlapping_sni_first_server_wins() -> None:
    text = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8443, name: https-1, protocol: HTTPS}
    hosts: [a.example.com, b.example.com]
    tls: {mode: SIMPLE, serverCertificate: /c/1.pem, privateKey: /c/1.key}
  - port: {number: 8443, name: https-2, protocol: HTTPS}
    hosts: [b.example.com, c.example.com]
    tls: {mode: SIMPLE, serverCertificate: /c/2.pem, privateKey: /c/2.key}
  - port: {number: 8443, name: https-3, protocol: HTTPS}
    hosts: [c.example.com]
    tls: {mode: SIMPLE, serverCertificate: /c/3.pem, privateKey: /c/3.key}
"""
    lst = generate(state_of(text), router(), TypeUrl.LISTENER)[f"{GW_IP}_8443"]
    assert [list(fc.filter_chain_match.server_names) for fc in lst.filter_chains] == [
        ["a.example.com", "b.example.com"],
        ["c.example.com"],
    ]
