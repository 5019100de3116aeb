"""Gateway TLS from Kubernetes Secrets, end to end: `serve --kubeconfig` against
the real API server, a real router Envoy connected straight to it (SDS over its
ADS stream, no agent). An HTTPS server with `credentialName` serves the
Secret's certificate; the Secret is replaced with a new certificate while a
client loop keeps requesting, and every request succeeds while the new
certificate takes over. A MUTUAL server takes its CA from `<name>-cacert`. The
gateway's service account may list Secrets in its namespace (as Istio's
gateway charts grant); a Secret in another namespace is never served."""

from __future__ import annotations

import base64
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.e2e.test_gateway import CA, Pem, https_get, service
from tests.support.envoy import EnvoyFactory, envoy_factory_context
from tests.support.kube import KubeCluster
from tests.support.mesh import Mesh
from tests.support.net import allocate_ip
from tests.support.upstreams import UpstreamFactory

HOST = "web.example.com"
PORT, MTLS_PORT, OTHER_PORT = 8443, 9443, 7443


@pytest.fixture
def envoy_factory(tmp_path: Path) -> Iterator[EnvoyFactory]:
    with envoy_factory_context(tmp_path / "envoy") as factory:
        yield factory


def tls_secret(ns: str, name: str, pem: Pem) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": ns},
        "data": {
            "tls.crt": base64.b64encode(pem.cert.read_bytes()).decode(),
            "tls.key": base64.b64encode(pem.key.read_bytes()).decode(),
        },
    }


def gateway_config(ns: str, other_ns: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {PORT}, name: https, protocol: HTTPS}}
    hosts: [{HOST}]
    tls: {{mode: SIMPLE, credentialName: web-cert}}
  - port: {{number: {MTLS_PORT}, name: https-mtls, protocol: HTTPS}}
    hosts: [{HOST}]
    tls: {{mode: MUTUAL, credentialName: web-cert}}
  - port: {{number: {OTHER_PORT}, name: https-other, protocol: HTTPS}}
    hosts: [{HOST}]
    tls: {{mode: SIMPLE, credentialName: "kubernetes://{other_ns}/web-cert"}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: default}}
spec:
  hosts: ["{HOST}"]
  gateways: [gw]
  http:
  - route: [{{destination: {{host: web, port: {{number: 9080}}}}}}]
---
"""


def test_credential_name_from_secret_rotated_without_failed_request(
    tmp_path: Path, envoy_factory: EnvoyFactory, kube: KubeCluster, upstreams: UpstreamFactory
) -> None:
    ns, other_ns = kube.namespace("gwcred"), kube.namespace("elsewhere")
    kube.apply(
        f"""
apiVersion: v1
kind: ServiceAccount
metadata: {{name: ingress, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: ingress-sds, namespace: {ns}}}
rules: [{{apiGroups: [""], resources: [secrets], verbs: [get, watch, list]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: ingress-sds, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: ingress-sds}}
subjects: [{{kind: ServiceAccount, name: ingress, namespace: {ns}}}]
"""
    )
    ca = CA(tmp_path / "pki")
    client_ca = CA(tmp_path / "client-pki", "client-ca")
    first, second = ca.issue("first", [HOST]), ca.issue("second", [HOST])
    client = client_ca.issue("client", ["client.example.com"], client=True)
    kube.apply(tls_secret(ns, "web-cert", first), tls_secret(other_ns, "web-cert", first))
    cacert = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "web-cert-cacert", "namespace": ns},
              "data": {"ca.crt": base64.b64encode(client_ca.pem.cert.read_bytes()).decode()}}  # fmt: skip
    kube.apply(cacert)

    up = upstreams.http("web")
    mesh = Mesh(tmp_path / "cp", envoy_factory, extra_args=["--kubeconfig", str(kube.kubeconfig)])
    mesh.write("web.yaml", service("web", 9080, up.host, up.port) + gateway_config(ns, other_ns))
    mesh.start()
    try:
        ip = allocate_ip()
        # Not waiting for /ready: the listener of the refused Secret warms until Envoy's
        # initial fetch timeout (15 s, as istiod leaves it), holding Envoy's readiness.
        gw = mesh.gateway(
            "ingressgateway", ip=ip, namespace=ns, service_account="ingress", labels={"istio": "ingressgateway"},
            wait=False,
        )  # fmt: skip
        mesh.wait_listener(gw, f"{ip}_{PORT}", 20)
        served = mesh.wait(lambda: https_get(ip, PORT, HOST, "/", ca.pem.cert), 20, "HTTPS with the Secret's cert")
        assert served.status == 200 and served.peer_cn == HOST
        assert b"web" in served.body

        # MUTUAL: the CA from web-cert-cacert; a client without a certificate is refused.
        mesh.wait_listener(gw, f"{ip}_{MTLS_PORT}", 20)
        res = mesh.wait(lambda: https_get(ip, MTLS_PORT, HOST, "/", ca.pem.cert, client=client), 20, "mutual TLS")
        assert res.status == 200
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            https_get(ip, MTLS_PORT, HOST, "/", ca.pem.cert)

        # Rotation: a client loop runs across the Secret's replacement.
        results: list[str] = []
        errors: list[str] = []
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                try:
                    r = https_get(ip, PORT, HOST, "/", ca.pem.cert)
                    results.append(f"{r.status}:{r.peer_cn}")
                except Exception as e:  # every failure is reported by the assertion below
                    errors.append(repr(e))
                time.sleep(0.02)

        serial_before = _serial(ip)
        worker = threading.Thread(target=loop, daemon=True)
        worker.start()
        try:
            time.sleep(0.5)
            kube.apply(tls_secret(ns, "web-cert", second))
            mesh.wait(lambda: _serial(ip) != serial_before, 20, "the rotated certificate served")
            time.sleep(0.5)
        finally:
            stop.set()
            worker.join(10)
        assert _serial(ip) == _cert_serial(second)
        assert not errors, errors[:5]
        assert len(results) > 10 and all(r == f"200:{HOST}" for r in results), results[:5]

        # kubernetes://OTHER-NS/NAME: another namespace's Secret is never served.
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            https_get(ip, OTHER_PORT, HOST, "/", ca.pem.cert, timeout=2)
    finally:
        mesh.stop()


def _serial(ip: str) -> int:
    """The serial of the certificate the gateway presents for HOST (SNI), unverified."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((ip, PORT), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=HOST) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


def _cert_serial(p: Pem) -> int:
    return int(x509.load_pem_x509_certificate(p.cert.read_bytes()).serial_number)
