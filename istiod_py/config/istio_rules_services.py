"""Istio's own validation rules for ServiceEntry, WorkloadEntry, Sidecar, Gateway
and the security kinds (istio/istio pkg/config/validation); the routing kinds
are in istio_rules.py. docs/field-support.md lists the rules implemented."""

from __future__ import annotations

from typing import Any

from istio.networking.v1alpha3 import gateway_pb2 as gw_pb
from istio.networking.v1alpha3 import service_entry_pb2 as se_pb

from istiod_py.config.model import quote
from istiod_py.config.proto_yaml import FieldProblem
from istiod_py.config.rules import (
    Problems,
    check_duration,
    check_export_to,
    check_header_name,
    check_host,
    check_ip,
    check_ip_or_cidr,
    check_namespaced_host,
    check_port,
    fqdn_problem,
    is_dns1123_label,
    is_ip,
)

_HTTP_OR_TLS = ("HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-WEB", "HTTPS", "TLS")


def _port_name(name: str, path: str, out: Problems) -> None:
    if name and not is_dns1123_label(name):
        out.append(FieldProblem(path, f"port name {quote(name)} is not a DNS-1123 label"))


def _bind(bind: str, path: str, out: Problems) -> None:
    if bind and not bind.startswith("unix://"):
        check_ip(bind, path, out)


def _endpoint_address(address: str, path: str, out: Problems) -> None:
    if address and not address.startswith("unix://") and not is_ip(address):
        problem = fqdn_problem(address)
        if problem:
            out.append(FieldProblem(path, f"{quote(address)} is neither an IP address nor a host name: {problem}"))


def service_entry_rules(se: Any, namespace: str) -> Problems:
    out: Problems = []
    for i, h in enumerate(se.hosts):
        if h == "*":
            out.append(FieldProblem(f"spec.hosts[{i}]", "'*' is not a valid ServiceEntry host"))
        else:
            check_host(h, f"spec.hosts[{i}]", out)
    for i, a in enumerate(se.addresses):
        check_ip_or_cidr(a, f"spec.addresses[{i}]", out)
        if "/" in a and se.resolution not in (se_pb.ServiceEntry.NONE, se_pb.ServiceEntry.STATIC):
            out.append(
                FieldProblem(f"spec.addresses[{i}]", "CIDR addresses are allowed only with resolution NONE or STATIC")
            )
    numbers: set[int] = set()
    port_names = {p.name for p in se.ports}
    for i, p in enumerate(se.ports):
        if p.number in numbers:
            out.append(FieldProblem(f"spec.ports[{i}].number", f"port {p.number} is defined twice"))
        numbers.add(p.number)
        _port_name(p.name, f"spec.ports[{i}].name", out)
        if p.target_port:
            check_port(p.target_port, f"spec.ports[{i}].targetPort", out)
    dns = se.resolution in (se_pb.ServiceEntry.DNS, se_pb.ServiceEntry.DNS_ROUND_ROBIN)
    if dns and not se.endpoints:
        for i, h in enumerate(se.hosts):
            if h != "*" and fqdn_problem(h):
                out.append(
                    FieldProblem(f"spec.hosts[{i}]", "with DNS resolution and no endpoints, hosts must be FQDNs")
                )
    for i, ep in enumerate(se.endpoints):
        path = f"spec.endpoints[{i}]"
        if dns:
            _endpoint_address(ep.address, f"{path}.address", out)
        for name in ep.ports:
            if name not in port_names:
                out.append(FieldProblem(f"{path}.ports[{name}]", f"port {quote(name)} is not defined in spec.ports"))
    if se.resolution != se_pb.ServiceEntry.NONE and len(se.hosts) > 1:
        for i, p in enumerate(se.ports):
            if p.protocol.upper() not in _HTTP_OR_TLS:
                out.append(
                    FieldProblem(
                        f"spec.ports[{i}].protocol",
                        "several hosts need HTTP or TLS ports (plain TCP cannot tell the hosts apart) "
                        "unless resolution is NONE",
                    )
                )
                break
    check_export_to(se.export_to, namespace, "spec.exportTo", out, service_entry=True)
    return out


def workload_entry_rules(we: Any, namespace: str) -> Problems:
    out: Problems = []
    _endpoint_address(we.address, "spec.address", out)
    for name in we.ports:
        _port_name(name, f"spec.ports[{name}]", out)
    return out


# Sidecar -----------------------------------------------------------------------------------------


def _default_endpoint(text: str, path: str, out: Problems) -> None:
    if text.startswith("unix://"):
        if not text[len("unix://") :].startswith(("/", "@")):
            out.append(FieldProblem(path, f"{quote(text)}: a unix address needs an absolute path"))
        return
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit():
        out.append(FieldProblem(path, f"{quote(text)} must be IP:port or unix://path"))
        return
    if host:
        check_ip(host, path, out)
    check_port(int(port), path, out)


def sidecar_rules(sc: Any, namespace: str) -> Problems:
    out: Problems = []
    if not (
        sc.egress or sc.ingress or sc.HasField("outbound_traffic_policy") or sc.HasField("inbound_connection_pool")
    ):
        out.append(FieldProblem("spec", "empty Sidecar: set egress, ingress or outboundTrafficPolicy"))
    ports: set[int] = set()
    for i, ing in enumerate(sc.ingress):
        path = f"spec.ingress[{i}]"
        if not ing.HasField("port"):
            continue  # validation.py reports it
        if ing.port.number in ports:
            out.append(FieldProblem(f"{path}.port.number", "ports of ingress listeners must be unique"))
        ports.add(ing.port.number)
        _port_name(ing.port.name, f"{path}.port.name", out)
        _bind(ing.bind, f"{path}.bind", out)
        if ing.default_endpoint:
            _default_endpoint(ing.default_endpoint, f"{path}.defaultEndpoint", out)
    ports = set()
    for i, eg in enumerate(sc.egress):
        path = f"spec.egress[{i}]"
        if not eg.HasField("port"):
            if i != len(sc.egress) - 1:
                out.append(FieldProblem(path, "the egress listener without a port must be the last one"))
        else:
            if eg.port.number:
                if eg.port.number in ports:
                    out.append(FieldProblem(f"{path}.port.number", "ports of egress listeners must be unique"))
                ports.add(eg.port.number)
                check_port(eg.port.number, f"{path}.port.number", out)
            elif not eg.bind.startswith("unix://"):
                out.append(FieldProblem(f"{path}.bind", "a listener with port 0 needs a unix:// bind address"))
            _port_name(eg.port.name, f"{path}.port.name", out)
            _bind(eg.bind, f"{path}.bind", out)
        for j, h in enumerate(eg.hosts):
            if "/" in h:  # the missing slash is reported by validation.py
                check_namespaced_host(h, f"{path}.hosts[{j}]", out)
    return out


# Gateway -----------------------------------------------------------------------------------------


def gateway_rules(gw: Any, namespace: str) -> Problems:
    out: Problems = []
    for i, s in enumerate(gw.servers):
        path = f"spec.servers[{i}]"
        for j, h in enumerate(s.hosts):
            host = h.partition("/")[2] if "/" in h else h
            if "/" in h:
                check_namespaced_host(h, f"{path}.hosts[{j}]", out)
            elif host != "*":
                check_host(host, f"{path}.hosts[{j}]", out, allow_ip=True)
        if s.HasField("port") and not s.port.name:
            out.append(FieldProblem(f"{path}.port.name", "port name is required"))
        _bind(s.bind, f"{path}.bind", out)
        if s.HasField("tls"):
            _server_tls(s.tls, f"{path}.tls", out)
    return out


def _server_tls(tls: Any, path: str, out: Problems) -> None:
    if tls.credential_name or tls.credential_names:
        return  # credentials come from elsewhere (rejected as unsupported anyway)
    if tls.mode == gw_pb.ServerTLSSettings.SIMPLE or tls.mode in (
        gw_pb.ServerTLSSettings.MUTUAL,
        gw_pb.ServerTLSSettings.OPTIONAL_MUTUAL,
    ):
        if tls.tls_certificates:
            return
        if not tls.server_certificate:
            out.append(FieldProblem(f"{path}.serverCertificate", "TLS termination needs a server certificate"))
        if not tls.private_key:
            out.append(FieldProblem(f"{path}.privateKey", "TLS termination needs a private key"))
        if tls.mode != gw_pb.ServerTLSSettings.SIMPLE and not tls.ca_certificates:
            out.append(FieldProblem(f"{path}.caCertificates", "MUTUAL TLS needs a client CA bundle"))
    if tls.ca_crl and tls.mode == gw_pb.ServerTLSSettings.SIMPLE:
        out.append(FieldProblem(f"{path}.caCrl", "CRL is not supported with SIMPLE TLS"))


# Security ----------------------------------------------------------------------------------------


def request_authentication_rules(ra: Any, namespace: str) -> Problems:
    out: Problems = []
    for i, rule in enumerate(ra.jwt_rules):
        path = f"spec.jwtRules[{i}]"
        for j, a in enumerate(rule.audiences):
            if not a:
                out.append(FieldProblem(f"{path}.audiences[{j}]", "audience cannot be empty"))
        for j, p in enumerate(rule.from_params):
            if not p:
                out.append(FieldProblem(f"{path}.fromParams[{j}]", "query parameter name cannot be empty"))
        for j, c in enumerate(rule.from_cookies):
            if not c:
                out.append(FieldProblem(f"{path}.fromCookies[{j}]", "cookie name cannot be empty"))
        for j, oc in enumerate(rule.output_claim_to_headers):
            if not oc.claim or not oc.header:
                out.append(FieldProblem(f"{path}.outputClaimToHeaders[{j}]", "claim and header are required"))
            else:
                check_header_name(oc.header, f"{path}.outputClaimToHeaders[{j}].header", out)
        check_duration(rule, "timeout", path, out)
    return out
