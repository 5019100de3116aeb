"""The CA as the control plane runs it: root (self-signed and persisted, or a
plug-in CA), the authenticator chain, the gRPC service and the secure port's
credentials."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from .authn import Authenticator, ChainAuthenticator, ClientCertAuthenticator, TokenFileAuthenticator
from .bundle import load_ca_bundle
from .errors import CAConfigError
from .metrics import CAMetrics
from .service import add_ca_service, server_credentials
from .signer import CAOptions, CertificateAuthority

if TYPE_CHECKING:
    from istiod_py.model import MeshConfig

log = logging.getLogger(__name__)


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


def start_ca(
    mesh: MeshConfig,
    *,
    ca_dir: str | None = None,
    cacerts_dir: str | None = None,
    token_file: str | None = None,
    listen_address: str = "127.0.0.1",
) -> CARuntime:
    """Load (or create on first start) the CA. The root is written to
    `<ca-dir>/root-cert.pem` so agents and gateways can trust the control plane.
    The server passes its options field by field: the CA knows nothing of `serve`."""
    if cacerts_dir:
        bundle = load_ca_bundle(cacerts_dir, trust_domain=mesh.trust_domain)
        root_dir = Path(ca_dir) if ca_dir else Path(cacerts_dir)
        if ca_dir:
            _private_dir(root_dir)
    else:
        root_dir = Path(ca_dir or "./var/ca")
        _private_dir(root_dir)
        bundle = load_ca_bundle(root_dir, trust_domain=mesh.trust_domain)
    ca = CertificateAuthority(bundle, CAOptions(trust_domain=mesh.trust_domain))
    root_path = root_dir / "root-cert.pem"
    if not root_path.exists() or root_path.read_text() != bundle.root_pem:
        tmp = root_path.with_suffix(".tmp")
        tmp.write_text(bundle.root_pem)
        os.replace(tmp, root_path)
    authenticators: list[Authenticator] = []
    if token_file:
        try:
            authenticators.append(TokenFileAuthenticator(token_file))
        except ValueError as e:  # a bad table at start stops `serve`; later edits keep the last good one
            raise CAConfigError(f"--token-file: {e}") from e
    authenticators.append(ClientCertAuthenticator([bundle.root_cert], bundle.chain[1:-1], mesh.trust_domain))
    return CARuntime(
        ca=ca,
        authenticator=ChainAuthenticator(authenticators),
        registry=CollectorRegistry(),
        root_cert_path=root_path,
        listen_address=listen_address,
    )


def _private_dir(d: Path) -> None:
    """Create the CA directory owner-only (0700) whatever the umask: it holds the root key.
    An existing directory is left as it is (it may be shared, e.g. `.`), with a warning when open."""
    if d.is_dir():
        if d.stat().st_mode & 0o077:
            log.warning("CA directory %s is open to group or others; the root key in it is 0600", d)
        return
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)  # mkdir's mode is masked by the umask; chmod is not
