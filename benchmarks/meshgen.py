"""Generate a config directory for a mesh of N services x E endpoints, and apply
the changes the benchmark measures.

Layout (one file per namespace, so an endpoint change rewrites one small file
and a VirtualService change rewrites one tiny file; the file source re-reads the
whole directory on any change either way):

    DIR/ns-K.yaml        Services + EndpointSlices of namespace ns-K
    DIR/shared-vs.yaml   the VirtualService every proxy sees (full-push target)
    DIR/vs-K.yaml        optional extra VirtualServices (--virtual-services)

Kubernetes Service + EndpointSlice documents (format "kube") are the default.
ServiceEntry documents with inline endpoints (format "se") load about twice as
fast through istiod_py.config.loader (`python -m benchmarks.meshgen --compare`,
1000x3: 0.23 s vs 0.41 s). In both formats the endpoint-only scenario is an
EDS-only push (a ServiceEntry's `endpoints` are left out of its kind digest:
model/mesh.py ENDPOINT_FIELDS).
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

DOMAIN = "cluster.local"
PORT = 8080
TCP_PORT = 9000
SHARED_VS_FILE = "shared-vs.yaml"


@dataclass(frozen=True)
class MeshSpec:
    services: int = 1000
    endpoints: int = 3
    namespaces: int = 10
    virtual_services: int = 0
    fmt: str = "kube"  # kube | se
    # Heterogeneous mesh (issue 18): a Sidecar per namespace importing its own
    # namespace, ns-0 (where the scenarios' targets live) and the next one; an
    # AuthorizationPolicy per namespace selecting one workload; every
    # `tcp_every`-th service a TCP port instead of HTTP.
    hetero: bool = False
    tcp_every: int = 4

    def namespace_of(self, i: int) -> str:
        return f"ns-{i % self.namespaces}"

    def service_name(self, i: int) -> str:
        return f"svc-{i}"

    def host(self, i: int) -> str:
        return f"{self.service_name(i)}.{self.namespace_of(i)}.svc.{DOMAIN}"

    def is_tcp(self, i: int) -> bool:
        """svc-0 (the scenarios' target) is always HTTP."""
        return self.hetero and self.tcp_every > 0 and i % self.tcp_every == self.tcp_every - 1

    def port_of(self, i: int) -> tuple[str, int]:
        return ("tcp", TCP_PORT) if self.is_tcp(i) else ("http", PORT)


CHURN_PREFIX = b"10.240."


def endpoint_ip(svc: int, ep: int, generation: int = 0) -> str:
    """Endpoint addresses: 10.A.B.C for generation 0; 10.254.G.x afterwards, so
    the changed address is a unique marker in the EDS bytes. Negative
    generations are churn changes: 10.(240+ep).(g>>8).(g&255), g = -generation,
    so a client can read the newest churn change it has from the EDS bytes
    (CHURN_PREFIX + "A.B" of endpoint 0)."""
    if generation < 0:
        g = -generation
        return f"10.{240 + ep}.{(g >> 8) & 0xFF}.{g & 0xFF}"
    if generation:
        return f"10.254.{generation % 256}.{ep + 1}"
    n = svc * 64 + ep + 1
    return f"10.{(n >> 16) & 0xFF}.{(n >> 8) & 0xFF}.{n & 0xFF}"


def _kube_service(spec: MeshSpec, i: int, generation: int = 0) -> str:
    ns, name = spec.namespace_of(i), spec.service_name(i)
    pname, port = spec.port_of(i)
    n = i + 1
    eps = "".join(
        f"""  - addresses: ["{endpoint_ip(i, e, generation)}"]
    conditions: {{ready: true}}
    targetRef: {{kind: Pod, name: {name}-{e}, namespace: {ns}}}
"""
        for e in range(spec.endpoints)
    )
    return f"""---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}, labels: {{app: {name}}}}}
spec:
  clusterIP: 172.20.{(n >> 8) & 0xFF}.{n & 0xFF}
  selector: {{app: {name}}}
  ports:
  - {{name: {pname}, port: {port}, targetPort: {port}, protocol: TCP}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-abc
  namespace: {ns}
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports:
- {{name: {pname}, port: {port}, protocol: TCP}}
endpoints:
{eps}"""


def _service_entry(spec: MeshSpec, i: int, generation: int = 0) -> str:
    ns, name = spec.namespace_of(i), spec.service_name(i)
    pname, port = spec.port_of(i)
    eps = "".join(
        f'  - {{address: "{endpoint_ip(i, e, generation)}", labels: {{app: {name}}}}}\n' for e in range(spec.endpoints)
    )
    return f"""---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: ["{spec.host(i)}"]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {{name: {pname}, number: {port}, protocol: {pname.upper()}}}
  endpoints:
{eps}"""


def _shared_vs(spec: MeshSpec, generation: int) -> str:
    """A VirtualService on svc-0 (visible to every proxy: default exportTo).
    The prefix `/bmk-full-G` is the marker a client looks for in RDS."""
    return f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: shared, namespace: {spec.namespace_of(0)}}}
spec:
  hosts: ["{spec.host(0)}"]
  http:
  - match:
    - uri: {{prefix: "/bmk-full-{generation}"}}
    route:
    - destination: {{host: "{spec.host(0)}", port: {{number: {PORT}}}}}
    timeout: 5s
  - route:
    - destination: {{host: "{spec.host(0)}", port: {{number: {PORT}}}}}
"""


def full_marker(generation: int) -> bytes:
    return f"/bmk-full-{generation}".encode()


def eds_marker(generation: int) -> bytes:
    ip = endpoint_ip(0, 0, generation).encode()
    # length-prefixed, as the string sits in SocketAddress.address
    return bytes([len(ip)]) + ip


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _namespace_file(spec: MeshSpec, ns_index: int, changed: dict[int, int]) -> str:
    gen = _service_entry if spec.fmt == "se" else _kube_service
    body = "".join(gen(spec, i, changed.get(i, 0)) for i in range(ns_index, spec.services, spec.namespaces))
    return body + (_scoping(spec, ns_index) if spec.hetero else "")


def _scoping(spec: MeshSpec, k: int) -> str:
    """Per-namespace Sidecar (own namespace, ns-0 and the next namespace: three
    namespaces, or fewer when they coincide) and a per-workload AuthorizationPolicy
    selecting the namespace's first simulated client (loadgen: client-K is in ns-K)."""
    ns = f"ns-{k}"
    imports = ["./*", "ns-0/*", f"ns-{(k + 1) % spec.namespaces}/*"]
    if k == 0:
        imports[1] = f"ns-{(k + 2) % spec.namespaces}/*"
    hosts = ", ".join(f'"{h}"' for h in dict.fromkeys(imports))
    return f"""---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: {ns}}}
spec:
  egress:
  - hosts: [{hosts}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: client-{k}, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: client-{k}}}}}
  action: ALLOW
  rules:
  - from: [{{source: {{namespaces: ["{ns}", "ns-0"]}}}}]
    to: [{{operation: {{ports: ["{PORT}"]}}}}]
"""


def generate(spec: MeshSpec, root: str | Path) -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for k in range(min(spec.namespaces, spec.services)):
        _write(root / f"ns-{k}.yaml", _namespace_file(spec, k, {}))
    _write(root / SHARED_VS_FILE, _shared_vs(spec, 0))
    for v in range(spec.virtual_services):
        i = (v * 7 + 1) % spec.services
        _write(
            root / f"vs-{v}.yaml",
            f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs-{v}, namespace: {spec.namespace_of(i)}}}
spec:
  hosts: ["{spec.host(i)}"]
  http:
  - match: [{{headers: {{x-canary: {{exact: "1"}}}}}}]
    route: [{{destination: {{host: "{spec.host(i)}"}}}}]
    retries: {{attempts: 2, perTryTimeout: 1s}}
  - route: [{{destination: {{host: "{spec.host(i)}"}}}}]
""",
        )
    return root


def apply_full_push(spec: MeshSpec, root: str | Path, generation: int) -> bytes:
    """Edit the VirtualService every proxy sees; returns the RDS marker."""
    _write(Path(root) / SHARED_VS_FILE, _shared_vs(spec, generation))
    return full_marker(generation)


def apply_endpoint_change(spec: MeshSpec, root: str | Path, generation: int) -> bytes:
    """Change svc-0's endpoint addresses (an EDS-only change); returns the EDS marker."""
    _write(Path(root) / "ns-0.yaml", _namespace_file(spec, 0, {0: generation}))
    return eds_marker(generation)


def churn_services(spec: MeshSpec, k: int = 10) -> list[int]:
    """The services steady churn rotates over: the first k of namespace ns-0."""
    return list(range(0, spec.services, spec.namespaces))[:k]


def apply_churn(spec: MeshSpec, root: str | Path, changed: dict[int, int], g: int) -> None:
    """Churn change number g (1-based): the next service in the rotation gets the
    addresses of generation g; `changed` (service -> generation) is updated."""
    rot = churn_services(spec)
    changed[rot[(g - 1) % len(rot)]] = -g
    _write(Path(root) / "ns-0.yaml", _namespace_file(spec, 0, changed))


def changed_cluster(spec: MeshSpec) -> str:
    return f"outbound|{PORT}||{spec.host(0)}"


def _compare(n: int, e: int) -> None:
    import tempfile

    from istiod_py.config.loader import load_directory

    for fmt in ("kube", "se"):
        with tempfile.TemporaryDirectory() as d:
            generate(MeshSpec(n, e, fmt=fmt), d)
            t = time.perf_counter()
            res = load_directory(d)
            dt = time.perf_counter() - t
            print(
                f"{fmt}: {n}x{e} loaded in {dt:.3f}s "
                f"({len(res.configs)} configs, {len(res.services)} services, {len(res.errors)} errors)"
            )
            for err in res.errors[:3]:
                print("  ", err)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", nargs="?")
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--endpoints", type=int, default=3)
    ap.add_argument("--namespaces", type=int, default=10)
    ap.add_argument("--virtual-services", type=int, default=0)
    ap.add_argument("--format", choices=["kube", "se"], default="kube")
    ap.add_argument("--hetero", action="store_true", help="per-namespace Sidecars, per-workload policy, TCP ports")
    ap.add_argument("--compare", action="store_true", help="time load_directory for both formats")
    a = ap.parse_args()
    if a.compare:
        _compare(a.services, a.endpoints)
        return
    if not a.dir:
        ap.error("dir is required")
    generate(MeshSpec(a.services, a.endpoints, a.namespaces, a.virtual_services, a.format, a.hetero), a.dir)


if __name__ == "__main__":
    main()
