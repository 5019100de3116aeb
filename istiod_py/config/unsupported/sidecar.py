"""Sidecar: which fields istiod_py implements, and load-time rejection of the rest."""

from __future__ import annotations

from istio.networking.v1alpha3 import sidecar_pb2 as sc_pb

from istiod_py.config.proto_yaml import FieldProblem

from .support import NOT_YET, WARN_ISTIO_IGNORES, Problems, Support, T, _p, _r, _reject, _s, _w

MSG_SIDECAR_INGRESS_TLS = f"{NOT_YET} (TLS termination on the sidecar's inbound listener); remove it"
MSG_SIDECAR_CONNECTION_POOL = f"{NOT_YET} (inbound connection pool limits); remove it"
MSG_EGRESS_PROXY = f"{NOT_YET} (sending unknown destinations to an egress proxy); remove it"
MSG_CAPTURE_IPTABLES = (
    "IPTABLES is not supported by istiod_py: listeners follow the proxy's INTERCEPTION_MODE; use DEFAULT or NONE"
)

SUPPORT: dict[str, Support] = {
    "Sidecar.workloadSelector": _s(f"{T}scope.py (sidecar_for)"),
    "Sidecar.ingress": _s(f"{T}context.py, {T}sidecar/listeners.py"),
    "Sidecar.egress": _s(f"{T}context.py, {T}sidecar/listeners.py"),
    "Sidecar.inboundConnectionPool": _r(MSG_SIDECAR_CONNECTION_POOL),
    "Sidecar.outboundTrafficPolicy": _s(f"{T}context.py, {T}sidecar/routes.py"),
    "IstioIngressListener.port": _s(f"{T}context.py, {T}sidecar/listeners.py"),
    "IstioIngressListener.bind": _s(f"{T}sidecar/listeners.py (inbound_listener)"),
    "IstioIngressListener.captureMode": _p(
        f"{T}sidecar/listeners.py",
        MSG_CAPTURE_IPTABLES,
        "IPTABLES; DEFAULT and NONE follow the proxy's INTERCEPTION_MODE",
    ),
    "IstioIngressListener.defaultEndpoint": _s(f"{T}sidecar/listeners.py, {T}generate.py"),
    "IstioIngressListener.tls": _r(MSG_SIDECAR_INGRESS_TLS),
    "IstioIngressListener.connectionPool": _r(MSG_SIDECAR_CONNECTION_POOL),
    "SidecarPort.number": _s(f"{T}context.py, {T}sidecar/listeners.py"),
    "SidecarPort.protocol": _s(f"{T}context.py, {T}sidecar/listeners.py"),
    "SidecarPort.name": _s(f"{T}context.py, {T}sidecar/listeners.py"),
    "SidecarPort.targetPort": _s(f"{T}context.py, {T}generate.py (inbound cluster target)"),
    "IstioEgressListener.port": _s(f"{T}context.py, {T}sidecar/listeners.py"),
    "IstioEgressListener.bind": _s(f"{T}sidecar/listeners.py (outbound_listeners)"),
    "IstioEgressListener.captureMode": _p(
        f"{T}sidecar/listeners.py",
        MSG_CAPTURE_IPTABLES,
        "IPTABLES; DEFAULT and NONE follow the proxy's INTERCEPTION_MODE",
    ),
    "IstioEgressListener.hosts": _s(f"{T}scope.py (EgressHosts)"),
    "OutboundTrafficPolicy.mode": _s(f"{T}context.py, {T}sidecar/routes.py"),
    "OutboundTrafficPolicy.egressProxy": _r(MSG_EGRESS_PROXY),
}

# Where the same message means different things in different places.
PATH_SUPPORT: dict[str, Support] = {
    "spec.egress[].port.targetPort": _w(WARN_ISTIO_IGNORES, "egress ports have no target"),
}


def check_sidecar(sc: sc_pb.Sidecar, namespace: str = "") -> Problems:
    out: Problems = []
    _reject(sc, ("inbound_connection_pool",), "spec", MSG_SIDECAR_CONNECTION_POOL, out)
    for i, ing in enumerate(sc.ingress):
        path = f"spec.ingress[{i}]"
        _reject(ing, ("tls",), path, MSG_SIDECAR_INGRESS_TLS, out)
        _reject(ing, ("connection_pool",), path, MSG_SIDECAR_CONNECTION_POOL, out)
        if ing.capture_mode == sc_pb.IPTABLES:
            out.append(FieldProblem(f"{path}.captureMode", MSG_CAPTURE_IPTABLES))
    for i, eg in enumerate(sc.egress):
        if eg.capture_mode == sc_pb.IPTABLES:
            out.append(FieldProblem(f"spec.egress[{i}].captureMode", MSG_CAPTURE_IPTABLES))
    if sc.HasField("outbound_traffic_policy"):
        _reject(sc.outbound_traffic_policy, ("egress_proxy",), "spec.outboundTrafficPolicy", MSG_EGRESS_PROXY, out)
    return out


def ignored(spec: sc_pb.Sidecar) -> Problems:
    """Set fields accepted with a warning (fields Istio ignores)."""
    out: Problems = []
    for i, eg in enumerate(spec.egress):
        if eg.port.target_port:
            out.append(FieldProblem(f"spec.egress[{i}].port.targetPort", WARN_ISTIO_IGNORES))
    return out
