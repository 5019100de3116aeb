"""Resource names exactly as istiod generates them: EnvoyFilter patches,
dashboards and operators match on these strings."""

from __future__ import annotations

BLACKHOLE = "BlackHoleCluster"
PASSTHROUGH = "PassthroughCluster"
INBOUND_PASSTHROUGH = "InboundPassthroughCluster"
VIRTUAL_OUTBOUND = "virtualOutbound"
VIRTUAL_INBOUND = "virtualInbound"


def outbound_cluster(port: int, host: str, subset: str = "") -> str:
    return f"outbound|{port}|{subset}|{host}"


def inbound_cluster(port: int, host: str = "", subset: str = "") -> str:
    return f"inbound|{port}|{subset}|{host}"


def parse_cluster(name: str) -> tuple[str, int, str, str] | None:
    """`outbound|9080|v1|reviews...` -> ("outbound", 9080, "v1", "reviews...")."""
    parts = name.split("|")
    if len(parts) != 4 or parts[0] not in ("outbound", "inbound"):
        return None
    try:
        port = int(parts[1])
    except ValueError:
        return None
    return parts[0], port, parts[2], parts[3]


def listener(address: str, port: int) -> str:
    return f"{address}_{port}"


def sidecar_route(port: int) -> str:
    return str(port)


def gateway_route(port: int, tls: bool = False) -> str:
    return f"{'https' if tls else 'http'}.{port}"


def vhost(host: str, port: int) -> str:
    return f"{host}:{port}"


def config_path(kind: str, namespace: str, name: str) -> str:
    """istiod's `istio.config` metadata (AddConfigInfoMetadata): the resource's
    API path with the canonical networking.istio.io/v1 version and the kind in
    kebab case, e.g. `virtual-service`, whatever version the YAML used."""
    return f"/apis/networking.istio.io/v1/namespaces/{namespace}/{kind}/{name}"
