"""Ports whose protocol a captured sidecar detects (istiod's "auto" protocol).

A Kubernetes service port that declares no protocol (a name without a protocol
prefix such as `web` or `metrics`, and no appProtocol) is opaque TCP for
captureMode NONE, as before, but a captured sidecar sniffs it, as istiod does:
outbound, plaintext HTTP goes through the HCM and the port's route
configuration (so VirtualService http routes apply), anything else through
tcp_proxy; inbound, virtualInbound has both HTTP and TCP chains for it.
(The model keeps no appProtocol: a port named without prefix but with
appProtocol `tcp` counts as undeclared.)"""

from __future__ import annotations

from istiod_py.model import Proxy, Service
from istiod_py.model.service import Port, Protocol


def undeclared(svc: Service, port: Port) -> bool:
    if not svc.source.startswith("Service ") or port.protocol != Protocol.TCP:
        return False
    name = port.name.lower()
    return name != "tcp" and not name.startswith("tcp-")


def sniffed(proxy: Proxy | None, svc: Service, port: Port) -> bool:
    """Whether `proxy` treats `svc:port` as HTTP-if-detected."""
    return proxy is not None and not proxy.capture_none and undeclared(svc, port)
