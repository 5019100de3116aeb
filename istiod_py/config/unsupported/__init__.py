"""Which Istio fields istiod_py implements, and load-time rejection of the rest.

Every field of VirtualService, DestinationRule, Gateway, ServiceEntry and Sidecar
is either implemented by the translator (or the registry), or rejected when set
with a FieldProblem naming it, or (for the few fields that only name stats, and
fields Istio itself ignores) accepted with a warning from `analysis.analyze`.
Nothing is silently ignored.

One module per kind holds its table (`SUPPORT`, keyed `Message.jsonName`), its
rejection messages and its check; `tables.py` merges them (`PATH_SUPPORT`
overrides the table for fields whose support depends on where the message is
used: SidecarPort.targetPort means something on ingress, nothing on egress);
`walker.py` walks the descriptors and renders docs/field-support.md
(`python -m istiod_py.config.unsupported > docs/field-support.md`).
`check_unsupported(kind, spec)` is what validation.py calls.
"""

from __future__ import annotations

from typing import Any

from istiod_py.config.proto_yaml import FieldProblem

from .destinationrule import MSG_DR_WORKLOAD_SELECTOR, MSG_PROXY_PROTOCOL, MSG_TUNNEL
from .gateway import (
    GATEWAY_PROTOCOLS,
    HTTP_PROTOCOLS,
    MSG_GW_AUTO_PASSTHROUGH_PROTOCOL,
    MSG_GW_ISTIO_MUTUAL,
    MSG_GW_MIXED_PORT,
    MSG_GW_PLAINTEXT_TLS,
    MSG_GW_PROTOCOL,
    MSG_GW_TLS_TERMINATE_TCP,
    TCP_PROTOCOLS,
    TLS_PROTOCOLS,
)
from .serviceentry import MSG_NETWORK
from .sidecar import MSG_CAPTURE_IPTABLES, MSG_EGRESS_PROXY, MSG_SIDECAR_CONNECTION_POOL, MSG_SIDECAR_INGRESS_TLS
from .support import NOT_YET, WARN_ISTIO_IGNORES, WARN_SERVER_NAME, WARN_STAT_PREFIX, Problems, Support
from .tables import CHECKS, DOC_KINDS, IGNORED, PATH_SUPPORT, SUPPORT
from .virtualservice import (
    MSG_EXPONENTIAL_DELAY,
    MSG_HTTP2_ERROR,
    MSG_L4_AT_GATEWAY,
    MSG_SOURCE_SUBNET,
    MSG_VS_EXPORT_TO_GATEWAY,
)
from .walker import field_paths, render_doc, support_key, support_table

__all__ = [
    "CHECKS",
    "DOC_KINDS",
    "GATEWAY_PROTOCOLS",
    "HTTP_PROTOCOLS",
    "IGNORED",
    "MSG_CAPTURE_IPTABLES",
    "MSG_DR_WORKLOAD_SELECTOR",
    "MSG_EGRESS_PROXY",
    "MSG_EXPONENTIAL_DELAY",
    "MSG_GW_AUTO_PASSTHROUGH_PROTOCOL",
    "MSG_GW_ISTIO_MUTUAL",
    "MSG_GW_MIXED_PORT",
    "MSG_GW_PLAINTEXT_TLS",
    "MSG_GW_PROTOCOL",
    "MSG_GW_TLS_TERMINATE_TCP",
    "MSG_HTTP2_ERROR",
    "MSG_L4_AT_GATEWAY",
    "MSG_NETWORK",
    "MSG_PROXY_PROTOCOL",
    "MSG_SIDECAR_CONNECTION_POOL",
    "MSG_SIDECAR_INGRESS_TLS",
    "MSG_SOURCE_SUBNET",
    "MSG_TUNNEL",
    "MSG_VS_EXPORT_TO_GATEWAY",
    "NOT_YET",
    "PATH_SUPPORT",
    "SUPPORT",
    "TCP_PROTOCOLS",
    "TLS_PROTOCOLS",
    "WARN_ISTIO_IGNORES",
    "WARN_SERVER_NAME",
    "WARN_STAT_PREFIX",
    "Problems",
    "Support",
    "check_unsupported",
    "field_paths",
    "ignored_fields",
    "render_doc",
    "support_key",
    "support_table",
]


def check_unsupported(kind: str, spec: Any, namespace: str = "") -> Problems:
    """FieldProblems for every set field istiod_py does not implement."""
    check = CHECKS.get(kind)
    return check(spec, namespace) if check is not None else []


def ignored_fields(kind: str, spec: Any) -> list[FieldProblem]:
    """Set fields that are accepted but have no effect (stats names, fields Istio ignores)."""
    ignored = IGNORED.get(kind)
    return ignored(spec) if ignored is not None else []
