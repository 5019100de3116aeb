"""The CA as the control plane runs it: root (self-signed and persisted, or a
plug-in CA), the authenticator chain, the gRPC service and the secure port's
credentials."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from .authn import Authenticator, ChainAuthenticator, ClientCertAuthenticator, TokenFileAuthenticator
from .bundle import load_ca_bundle
from .metrics import CAMetrics
from .service import add_ca_service, server_credentials
from .signer import CAOptions, CertificateAuthority

if TYPE_CHECKING:
    from istiod_py.model import MeshConfig
    from istiod_py.server import ServeOptions


@dataclass
class CARuntime:
    ca: CertificateAuthority
    authenticator: Authenticator
    registry: CollectorRegistry
    root_cert_path: Path
    listen_address: str

    def server_credentials(self) -> Any:
        ips = ["127.0.0.1"]
        if self.listen_address not in ("0.0.0.0", "::", "127.0.0.1", "localhost"):
            ips.append(self.listen_address)
        return server_credentials(
            self.ca, dns_names=("istiod.istio-system.svc", "istiod", "localhost"), ip_addresses=tuple(ips)
        )

    def register(self, server: Any) -> None:
        add_ca_service(server, self.ca, self.authenticator, CAMetrics(self.registry))


def start_ca(opts: ServeOptions, mesh: MeshConfig) -> CARuntime:
    """Load (or create on first start) the CA. The root is written to
    `<ca-dir>/root-cert.pem` so agents and gateways can trust the control plane."""
    ca_dir = Path(opts.cacerts_dir or opts.ca_dir or "./var/ca")
    ca_dir.mkdir(parents=True, exist_ok=True)
    bundle = load_ca_bundle(ca_dir, trust_domain=mesh.trust_domain)
    ca = CertificateAuthority(bundle, CAOptions(trust_domain=mesh.trust_domain))
    root_path = Path(opts.ca_dir or ca_dir) / "root-cert.pem"
    if not root_path.exists() or root_path.read_text() != bundle.root_pem:
        root_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = root_path.with_suffix(".tmp")
        tmp.write_text(bundle.root_pem)
        os.replace(tmp, root_path)
    authenticators: list[Authenticator] = []
    if opts.token_file:
        authenticators.append(TokenFileAuthenticator(opts.token_file))
    authenticators.append(ClientCertAuthenticator([bundle.root_cert], bundle.chain[1:-1], mesh.trust_domain))
    return CARuntime(
        ca=ca,
        authenticator=ChainAuthenticator(authenticators),
        registry=CollectorRegistry(),
        root_cert_path=root_path,
        listen_address=opts.listen_address,
    )
