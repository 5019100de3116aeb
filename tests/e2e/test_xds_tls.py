"""xDS over TLS on the secure port: the proxy verifies the control plane against
the mesh root and presents its workload certificate."""

from __future__ import annotations

from pathlib import Path

from tests.support.envoy import EnvoyFactory
from tests.support.mesh import Mesh
from tests.support.net import allocate_ip
from tests.support.upstreams import UpstreamFactory, http_request

MESH = """
apiVersion: v1
kind: Service
metadata: {{name: backend, namespace: default}}
spec:
  selector: {{app: backend}}
  ports: [{{name: http, port: 9080}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: backend, namespace: default}}
spec:
  address: {host}
  ports: {{http: {port}}}
  labels: {{app: backend}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: client, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: client}}}}
  egress:
  - port: {{number: 9080, protocol: HTTP, name: http}}
    bind: {bind}
    hosts: ["./*"]
"""


def test_xds_over_tls_with_the_mesh_root(
    tmp_path: Path, envoy_factory: EnvoyFactory, upstreams: UpstreamFactory
) -> None:
    app = upstreams.http("backend-app")
    bind = allocate_ip()
    mesh = Mesh(tmp_path, envoy_factory)
    try:
        mesh.write("mesh.yaml", MESH.format(host=app.host, port=app.port, bind=bind))
        mesh.start_with_ca()
        sc = mesh.agent_sidecar("client", labels={"app": "client"}, service_account="client-sa", xds_tls=True)
        mesh.wait_listener(sc, f"{bind}_9080")
        assert mesh.wait(lambda: http_request(bind, 9080, host="backend:9080").status == 200, 15, "traffic")
        # The xDS stream is the TLS one: its peer is on the secure port, and Envoy's
        # xds-grpc cluster completed TLS handshakes.
        syncz = mesh.debug("/debug/syncz")
        assert [p["proxy"] for p in syncz] == ["client.default"]
        assert sc.stat("cluster.xds-grpc.ssl.handshake") >= 1
        assert sc.stat("cluster.xds-grpc.ssl.connection_error") == 0
    finally:
        mesh.stop()
