"""Builders for the config documents e2e tests write into the control plane's
directory: one place for the shapes every mesh test needs (a Kubernetes
Service, a WorkloadEntry, a workload's captureMode-NONE Sidecar, a client's
egress-only Sidecar)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence


def _flow(d: Mapping[str, object]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in d.items()) + "}"


def docs(*parts: str) -> str:
    """Join YAML documents."""
    return "\n---\n".join(p.strip("\n") for p in parts) + "\n"


def service(
    name: str,
    port: int = 9080,
    port_name: str = "http",
    ns: str = "default",
    *,
    app: str = "",
    cluster_ip: str = "",
    more_ports: Sequence[tuple[str, int]] = (),
) -> str:
    """A Kubernetes Service selecting `app` (default: its own name); `cluster_ip`
    for the captured tests' VIPs ("None": headless)."""
    ports = ", ".join(f"{{name: {n}, port: {p}}}" for n, p in ((port_name, port), *more_ports))
    vip = f"\n  clusterIP: {cluster_ip}" if cluster_ip else ""
    return f"""apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:{vip}
  selector: {{app: {app or name}}}
  ports: [{ports}]"""


def workload_entry(
    name: str,
    address: str,
    labels: Mapping[str, str],
    *,
    ports: Mapping[str, int] | None = None,
    service_account: str = "",
    ns: str = "default",
) -> str:
    spec: dict[str, object] = {"address": address, "labels": _flow(labels)}
    if ports:
        spec["ports"] = _flow(ports)
    if service_account:
        spec["serviceAccount"] = service_account
    return f"""apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: {ns}}}
spec: {_flow(spec)}"""


def workload_sidecar(
    app: str,
    app_address: str,
    *,
    port: int = 9080,
    protocol: str = "HTTP",
    egress_bind: str = "",
    egress_hosts: str = '["./*"]',
    ns: str = "default",
) -> str:
    """A workload's Sidecar without iptables: inbound on the workload address to
    the app at `app_address`; an egress listener on its own bind address, or
    with no `egress_bind` only the hosts it may see (no listener of its own)."""
    egress = (
        f"[{{hosts: {egress_hosts}, port: {{number: 9999, protocol: HTTP, name: http}}, bind: {egress_bind}}}]"
        if egress_bind
        else f"[{{hosts: {egress_hosts}}}]"
    )
    return f"""apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: {app}, namespace: {ns}}}
spec:
  workloadSelector: {{labels: {{app: {app}}}}}
  ingress:
  - port: {{number: {port}, protocol: {protocol}, name: {protocol.lower()}}}
    defaultEndpoint: {app_address}
  egress: {egress}"""


def client_sidecar(
    bind: str,
    ports: Sequence[tuple[int, str]] = ((9080, "HTTP"),),
    *,
    app: str = "client",
    ns: str = "default",
    hosts: str = '["./*"]',
) -> str:
    """An egress-only Sidecar: listeners on `bind` for each (port, protocol)."""
    egress = "\n".join(
        f"  - {{port: {{number: {p}, protocol: {proto}, name: {proto.lower()}}}, bind: {bind}, hosts: {hosts}}}"
        for p, proto in ports
    )
    return f"""apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: {app}, namespace: {ns}}}
spec:
  workloadSelector: {{labels: {{app: {app}}}}}
  egress:
{egress}"""


def subsets(host: str, versions: Sequence[str], ns: str = "default") -> str:
    """A DestinationRule with one subset per `version` label."""
    items = "\n".join(f"  - {{name: {v}, labels: {{version: {v}}}}}" for v in versions)
    return f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {host}, namespace: {ns}}}
spec:
  host: {host}
  subsets:
{items}"""


def route_to(host: str, subset: str, ns: str = "default") -> str:
    """A VirtualService sending all of `host`'s HTTP traffic to one subset."""
    return f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {host}, namespace: {ns}}}
spec:
  hosts: [{host}]
  http:
  - route:
    - destination: {{host: {host}, subset: {subset}}}"""


# A DestinationRule giving each request its own connection (`.format(host=...)`):
# Envoy keeps serving connections accepted before a listener update with the old
# filters until they drain, so policy tests want fresh ones.
ONE_REQUEST_PER_CONNECTION = """apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {host}, namespace: default}}
spec:
  host: {host}
  trafficPolicy: {{connectionPool: {{http: {{maxRequestsPerConnection: 1}}}}}}"""


def zipkin(address: str, port: int) -> str:
    """Istio's `zipkin.istio-system` Service (9411) backed by a collector at address:port
    (the tests' Jaeger): the Service plus the WorkloadEntry that is its endpoint."""
    return docs(
        service("zipkin", 9411, "http-zipkin", "istio-system", app="jaeger"),
        workload_entry("jaeger", address, {"app": "jaeger"}, ports={"http-zipkin": port}, ns="istio-system"),
    )


def lua_filter(code: str, *, name: str = "lua", app: str = "client", port: int | None = 9080) -> str:
    """An EnvoyFilter inserting a Lua filter (inline `code`) before the router of
    `app`'s outbound HTTP listeners (on `port`, or every port with None). The
    control plane does not compile Lua: a script that does not compile is valid
    config that Envoy NACKs (LDS)."""
    port_match = f"\n        portNumber: {port}" if port is not None else ""
    return f"""apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {{name: {name}, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: {app}}}}}
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_OUTBOUND
      listener:{port_match}
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter: {{name: envoy.filters.http.router}}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.lua
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
          default_source_code:
            inline_string: {json.dumps(code)}"""
