"""Gateways (router proxies): Istio Gateway servers merged per port, as istiod
builds them for ingress and egress gateways.

A router proxy is selected by Gateways whose `spec.selector` matches its labels
(in every namespace, Istio's default). Its output:

- LDS (`listeners.py`): one listener per (bind, port). Gateways here run
  on loopback: with INTERCEPTION_MODE NONE the listener binds the proxy's own IP
  and is named `IP_PORT` (istiod's `<address>_<port>` rule applied to the
  address really bound); otherwise `0.0.0.0_PORT`.
- RDS (`routes.py`): `http.PORT` for plaintext HTTP servers,
  `https.PORT.PORTNAME.GATEWAY.NS` per TLS-terminating server.
- CDS/EDS: every service visible from the gateway's namespace, exactly as a
  sidecar without a Sidecar resource gets them (Sidecar resources do not apply
  to gateways, as in Istio), plus the SNI-named clusters AUTO_PASSTHROUGH needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from istiod_py.config.model import Config
from istiod_py.model import Proxy, labels_match

from ..context import PushContext
from . import credentials


@dataclass(frozen=True, slots=True)
class ServerHost:
    namespace: str  # "*" (any), or the namespace whose VirtualServices may bind
    host: str


@dataclass(frozen=True)
class GatewayServer:
    """One `spec.servers[i]` of a selected Gateway, with its resolved port."""

    gateway: Config
    index: int
    server: Any  # istio.networking.v1alpha3.Server
    listener_port: int  # the port bound: the gateway Service's targetPort for `port.number`

    @property
    def gateway_name(self) -> str:
        return f"{self.gateway.meta.namespace}/{self.gateway.meta.name}"

    @property
    def number(self) -> int:
        return int(self.server.port.number)

    @property
    def port_name(self) -> str:
        return str(self.server.port.name)

    @property
    def protocol(self) -> str:
        return str(self.server.port.protocol).upper()

    @property
    def tls_mode(self) -> int | None:
        return int(self.server.tls.mode) if self.server.HasField("tls") else None

    @property
    def is_http(self) -> bool:
        """Plaintext HTTP (HTTP, HTTP2, GRPC), or HTTPS/TLS terminated into HTTP."""
        return self.protocol in ("HTTP", "HTTP2", "GRPC", "GRPC-WEB")

    @property
    def is_https_terminated(self) -> bool:
        return self.protocol == "HTTPS" and self.server.HasField("tls") and credentials.terminates_tls(self.server.tls)

    @property
    def is_passthrough(self) -> bool:
        return self.protocol in ("HTTPS", "TLS") and self.tls_mode == credentials.ServerTLS.PASSTHROUGH

    @property
    def is_auto_passthrough(self) -> bool:
        return self.protocol == "TLS" and self.tls_mode == credentials.ServerTLS.AUTO_PASSTHROUGH

    @property
    def https_redirect(self) -> bool:
        return bool(self.server.HasField("tls") and self.server.tls.https_redirect)

    @property
    def hosts(self) -> tuple[ServerHost, ...]:
        out = []
        for h in self.server.hosts:
            ns, sep, host = str(h).partition("/")
            if not sep:
                ns, host = "*", ns
            elif ns == ".":
                ns = self.gateway.meta.namespace
            out.append(ServerHost(ns, host))
        return tuple(out)

    @property
    def sni_names(self) -> tuple[str, ...]:
        """Server names for the filter chain match: none when any host is `*`."""
        names = [h.host for h in self.hosts]
        if "*" in names:
            return ()
        return tuple(dict.fromkeys(names))

    @property
    def unsupported(self) -> str:
        if self.server.HasField("tls"):
            return credentials.unsupported_reason(self.server.tls)
        if self.protocol in ("HTTPS", "TLS"):
            return f"{self.protocol} server without tls settings"
        return ""


# istiod marks the Gateways it generates from Gateway API Gateways; those bind only to
# the gateway pods of their own namespace (istiod binds them to the gateway Service there).
GATEWAY_SEMANTICS = "internal.istio.io/gateway-semantics"


def selected_gateways(ctx: PushContext, proxy: Proxy) -> tuple[Config, ...]:
    """Gateways, in any namespace, whose selector matches the proxy's labels (those
    generated from a Gateway API Gateway: in the proxy's namespace only)."""

    def select() -> tuple[Config, ...]:
        out = []
        for cfg in ctx.state.of_kind("Gateway"):
            spec: Any = cfg.spec
            if cfg.meta.annotations.get(GATEWAY_SEMANTICS) == "gateway" and cfg.meta.namespace != proxy.namespace:
                continue
            if labels_match(dict(spec.selector), proxy.labels):
                out.append(cfg)
        return tuple(out)

    return ctx.cached(("gw-select", proxy.labels_key, proxy.namespace), select)


def gateway_keys(gateways: tuple[Config, ...]) -> tuple[str, ...]:
    return tuple(f"{g.meta.namespace}/{g.meta.name}" for g in gateways)


def port_map(ctx: PushContext, proxy: Proxy) -> Mapping[int, int]:
    """Service port -> target port for the services this gateway's address backs
    (istiod resolves a server's `port.number` to the gateway Service's targetPort:
    Service port 80 -> targetPort 8080 makes listener `..._8080` and `http.8080`)."""
    out: dict[int, int] = {}
    for ep in ctx.state.endpoints_by_address.get(proxy.ip, ()):
        out.setdefault(ep.service_port, ep.port)
    return out


def servers(ctx: PushContext, proxy: Proxy) -> tuple[GatewayServer, ...]:
    gws = selected_gateways(ctx, proxy)
    pmap = port_map(ctx, proxy)
    out = []
    for gw in gws:
        spec: Any = gw.spec
        for i, s in enumerate(spec.servers):
            if not s.HasField("port") or not s.port.number:
                continue
            out.append(GatewayServer(gw, i, s, pmap.get(int(s.port.number), int(s.port.number))))
    return tuple(out)


def bind_address(proxy: Proxy, server: GatewayServer) -> str:
    if server.server.bind:
        return str(server.server.bind)
    return proxy.ip if proxy.capture_none else "0.0.0.0"
