"""The smallest mesh with traffic: a server workload's sidecar in front of an app,
and a client sidecar whose egress listener on its own bind address reaches it —
the setup many e2e tests and benchmarks start from, written once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tests.support.configs import client_sidecar, docs, service, workload_entry, workload_sidecar
from tests.support.envoy import EnvoyProcess
from tests.support.mesh import Mesh
from tests.support.net import allocate_ip


@dataclass
class ClientServer:
    """Addresses of the pair; `config()` is its YAML, `start()` its two sidecars."""

    app_address: str  # host:port of the server's app
    server: str = "server"
    server_labels: Mapping[str, str] = field(default_factory=dict)  # besides app=<server>
    entry: str = ""  # the server's WorkloadEntry name (default: the server's)
    server_ip: str = field(default_factory=allocate_ip)
    client_bind: str = field(default_factory=allocate_ip)
    client_hosts: str = '["./*"]'
    # The server Sidecar's egress: its own listener on a fresh bind address (True),
    # or only the hosts it may see, `["./*"]` (False).
    server_egress_listener: bool = True

    @property
    def labels(self) -> dict[str, str]:
        return {"app": self.server, **self.server_labels}

    def config(self) -> str:
        return docs(
            service(self.server),
            workload_entry(self.entry or self.server, self.server_ip, self.labels),
            workload_sidecar(
                self.server, self.app_address, egress_bind=allocate_ip() if self.server_egress_listener else ""
            ),
            client_sidecar(self.client_bind, hosts=self.client_hosts),
        )

    def start(self, mesh: Mesh) -> tuple[EnvoyProcess, EnvoyProcess]:
        """(server, client) sidecars, once each has its 9080 listener."""
        server = mesh.sidecar(self.server, ip=self.server_ip, labels=self.labels)
        client = mesh.sidecar("client", labels={"app": "client"})
        mesh.wait_listener(server, f"{self.server_ip}_9080")
        mesh.wait_listener(client, f"{self.client_bind}_9080")
        return server, client
