"""SPIFFE identities as Istio uses them: spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>."""

from __future__ import annotations

from dataclasses import dataclass

SPIFFE_SCHEME = "spiffe://"
DEFAULT_TRUST_DOMAIN = "cluster.local"


@dataclass(frozen=True, slots=True)
class Identity:
    """A workload identity: the Kubernetes namespace and service account it runs as."""

    namespace: str
    service_account: str

    def spiffe_uri(self, trust_domain: str = DEFAULT_TRUST_DOMAIN) -> str:
        return f"{SPIFFE_SCHEME}{trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    def __str__(self) -> str:
        return f"{self.namespace}/{self.service_account}"


def parse_spiffe_uri(uri: str) -> tuple[str, Identity]:
    """Split an Istio SPIFFE URI into (trust domain, identity); ValueError if it is not one."""
    if not uri.startswith(SPIFFE_SCHEME):
        raise ValueError(f"not a SPIFFE URI (must start with {SPIFFE_SCHEME}): {uri!r}")
    parts = uri[len(SPIFFE_SCHEME) :].split("/")
    if len(parts) != 5 or parts[1] != "ns" or parts[3] != "sa" or not all(parts):
        raise ValueError(f"SPIFFE URI is not of the form spiffe://<td>/ns/<ns>/sa/<sa>: {uri!r}")
    return parts[0], Identity(namespace=parts[2], service_account=parts[4])
