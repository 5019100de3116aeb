"""Gateway: which fields istiod_py implements, and load-time rejection of the rest."""

from __future__ import annotations

from istio.networking.v1alpha3 import gateway_pb2 as gw_pb

from istiod_py.config.proto_yaml import FieldProblem

from .support import (
    CRED,
    NOT_YET,
    WARN_ISTIO_IGNORES,
    WARN_SERVER_NAME,
    Problems,
    Support,
    T,
    _p,
    _s,
    _w,
)

MSG_GW_ISTIO_MUTUAL = f"ISTIO_MUTUAL on a gateway server is {NOT_YET}; use SIMPLE or MUTUAL with certificate files"
MSG_GW_TLS_TERMINATE_TCP = (
    f"terminating TLS on a protocol TLS server (into tcp routes) is {NOT_YET}; "
    "use protocol HTTPS to terminate into http routes, or mode PASSTHROUGH"
)
MSG_GW_AUTO_PASSTHROUGH_PROTOCOL = "AUTO_PASSTHROUGH needs protocol TLS"
MSG_GW_PLAINTEXT_TLS = (
    "tls settings have no effect on a plaintext server (only httpsRedirect, on HTTP servers); use protocol HTTPS or TLS"
)
MSG_GW_MIXED_PORT = (
    f"plaintext and TLS servers (or HTTP and TCP servers) on one port are {NOT_YET}; give them separate port numbers"
)
MSG_GW_PROTOCOL = (
    "protocol is not supported by istiod_py: use HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, TLS, TCP, MONGO, REDIS or MYSQL"
)

SUPPORT: dict[str, Support] = {
    "Gateway.servers": _s(f"{T}gateway/servers.py, {T}gateway/listeners.py, {T}gateway/routes.py"),
    "Gateway.selector": _s(f"{T}gateway/servers.py (selected_gateways)"),
    "Server.port": _s(f"{T}gateway/servers.py"),
    "Server.bind": _s(f"{T}gateway/servers.py (bind_address), {T}gateway/routes.py"),
    "Server.hosts": _s(f"{T}gateway/servers.py, {T}gateway/routes.py (bound_hosts)"),
    "Server.tls": _p(CRED, MSG_GW_PLAINTEXT_TLS, "on a plaintext server, other than httpsRedirect on HTTP"),
    "Server.defaultEndpoint": _w(WARN_ISTIO_IGNORES),
    "Server.name": _w(WARN_SERVER_NAME),
    "Port.number": _s(f"{T}gateway/servers.py, {T}gateway/listeners.py"),
    "Port.protocol": _p(
        f"{T}gateway/servers.py, {T}gateway/listeners.py",
        f"{MSG_GW_PROTOCOL}; for a port shared with a server of another class: {MSG_GW_MIXED_PORT}",
        "other protocols, and plaintext/TLS or HTTP/TCP servers sharing a port",
    ),
    "Port.name": _s(f"{T}gateway/routes.py (https_route_name)"),
    "Port.targetPort": _w(WARN_ISTIO_IGNORES, "deprecated; the gateway Service's targetPort is used"),
    "ServerTLSSettings.httpsRedirect": _s(f"{T}gateway/routes.py"),
    "ServerTLSSettings.mode": _p(
        f"{CRED}, {T}gateway/listeners.py",
        f"ISTIO_MUTUAL: {MSG_GW_ISTIO_MUTUAL}; SIMPLE/MUTUAL/OPTIONAL_MUTUAL with protocol TLS: "
        f"{MSG_GW_TLS_TERMINATE_TCP}; AUTO_PASSTHROUGH without protocol TLS: {MSG_GW_AUTO_PASSTHROUGH_PROTOCOL}",
        "for the combinations named",
    ),
    "ServerTLSSettings.serverCertificate": _s(CRED),
    "ServerTLSSettings.privateKey": _s(CRED),
    "ServerTLSSettings.caCertificates": _s(CRED),
    "ServerTLSSettings.caCrl": _s(CRED),
    "ServerTLSSettings.credentialName": _s(f"{CRED}, istiod_py/kube/credentials.py"),
    "ServerTLSSettings.credentialNames": _s(f"{CRED}, istiod_py/kube/credentials.py"),
    "ServerTLSSettings.tlsCertificates": _s(CRED),
    "ServerTLSSettings.subjectAltNames": _s(CRED),
    "ServerTLSSettings.verifyCertificateSpki": _s(CRED),
    "ServerTLSSettings.verifyCertificateHash": _s(CRED),
    "ServerTLSSettings.minProtocolVersion": _s(CRED),
    "ServerTLSSettings.maxProtocolVersion": _s(CRED),
    "ServerTLSSettings.cipherSuites": _s(CRED),
    "TLSCertificate.serverCertificate": _s(CRED),
    "TLSCertificate.privateKey": _s(CRED),
    "TLSCertificate.caCertificates": _s(CRED),
}


HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC", "GRPC-WEB"})
TLS_PROTOCOLS = frozenset({"HTTPS", "TLS"})
TCP_PROTOCOLS = frozenset({"TCP", "MONGO", "REDIS", "MYSQL"})
GATEWAY_PROTOCOLS = HTTP_PROTOCOLS | TLS_PROTOCOLS | TCP_PROTOCOLS
_TERMINATING = (
    gw_pb.ServerTLSSettings.SIMPLE,
    gw_pb.ServerTLSSettings.MUTUAL,
    gw_pb.ServerTLSSettings.OPTIONAL_MUTUAL,
)


def _server_class(protocol: str) -> str:
    if protocol in TLS_PROTOCOLS:
        return "tls"
    return "http" if protocol in HTTP_PROTOCOLS else "tcp"


def _server(s: gw_pb.Server, path: str, out: Problems) -> None:
    protocol = s.port.protocol.upper()
    if protocol and protocol not in GATEWAY_PROTOCOLS:
        out.append(FieldProblem(f"{path}.port.protocol", f"{MSG_GW_PROTOCOL} (got {s.port.protocol!r})"))
        return
    if not s.HasField("tls"):
        return
    tls = s.tls
    tpath = f"{path}.tls"
    if protocol not in TLS_PROTOCOLS:
        rest = gw_pb.ServerTLSSettings()
        rest.CopyFrom(tls)
        if protocol in HTTP_PROTOCOLS:
            rest.ClearField("https_redirect")
        rest.ClearField("credential_name")  # istiod ignores it without TLS too
        rest.ClearField("credential_names")
        if rest.ListFields():
            out.append(FieldProblem(tpath, MSG_GW_PLAINTEXT_TLS))
        return
    if tls.mode == gw_pb.ServerTLSSettings.ISTIO_MUTUAL:
        out.append(FieldProblem(f"{tpath}.mode", MSG_GW_ISTIO_MUTUAL))
    elif protocol == "TLS" and tls.mode in _TERMINATING:
        out.append(FieldProblem(f"{tpath}.mode", MSG_GW_TLS_TERMINATE_TCP))
    elif protocol != "TLS" and tls.mode == gw_pb.ServerTLSSettings.AUTO_PASSTHROUGH:
        out.append(FieldProblem(f"{tpath}.mode", MSG_GW_AUTO_PASSTHROUGH_PROTOCOL))


def check_gateway(gw: gw_pb.Gateway, namespace: str = "") -> Problems:
    out: Problems = []
    classes: dict[tuple[str, int], tuple[int, str]] = {}
    for i, s in enumerate(gw.servers):
        path = f"spec.servers[{i}]"
        _server(s, path, out)
        protocol = s.port.protocol.upper()
        if not s.port.number or protocol not in GATEWAY_PROTOCOLS:
            continue
        key = (s.bind, s.port.number)
        cls = _server_class(protocol)
        first = classes.setdefault(key, (i, cls))
        if first[1] != cls:
            out.append(
                FieldProblem(
                    f"{path}.port.protocol",
                    f"{MSG_GW_MIXED_PORT} (port {s.port.number}: {protocol} here, "
                    f"{first[1].upper()} in spec.servers[{first[0]}])",
                )
            )
    return out


def ignored(spec: gw_pb.Gateway) -> Problems:
    """Set fields accepted with a warning (stats names, fields Istio ignores)."""
    out: Problems = []
    for i, s in enumerate(spec.servers):
        if s.name:
            out.append(FieldProblem(f"spec.servers[{i}].name", WARN_SERVER_NAME))
        if s.default_endpoint:
            out.append(FieldProblem(f"spec.servers[{i}].defaultEndpoint", WARN_ISTIO_IGNORES))
        if s.port.target_port:
            out.append(FieldProblem(f"spec.servers[{i}].port.targetPort", WARN_ISTIO_IGNORES))
    return out
