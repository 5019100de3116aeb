"""Virtual hosts shared across proxies (issue 18): the spliced RDS bytes are byte
for byte the deterministic serialization of the route configuration built whole,
and a virtual host every proxy sees is serialized once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from benchmarks import meshgen
from benchmarks.hetero import Mesh, proxies
from istiod_py.config.loader import load_text
from istiod_py.model import MeshConfig, MeshState, Proxy, ProxyType, parse_proxy
from istiod_py.registry.aggregate import Aggregator, SourceSnapshot
from istiod_py.translate.generate import Translator
from istiod_py.translate.sidecar import routes
from istiod_py.xds.types import TypeUrl

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "input.yaml").is_file())


def _golden(case: str) -> tuple[MeshState, list[Proxy]]:
    d = GOLDEN / case
    loaded = load_text((d / "input.yaml").read_text(), "input.yaml")
    mesh = MeshConfig.load(str(d / "mesh.yaml")) if (d / "mesh.yaml").is_file() else MeshConfig()
    agg = Aggregator(mesh=mesh)
    agg.set_source(
        "files", SourceSnapshot(tuple(loaded.configs), tuple(loaded.services), tuple(loaded.endpoint_slices))
    )
    pxs = [parse_proxy(p["node_id"], p.get("metadata") or {}) for p in yaml.safe_load((d / "proxies.yaml").read_text())]
    return agg.build(), [p for p in pxs if p.type == ProxyType.SIDECAR]


def _assert_same_bytes(state: MeshState, pxs: list[Proxy]) -> int:
    tr = Translator()
    checked = 0
    for proxy in pxs:
        ctx = tr.context(state)
        scope = ctx.sidecar_scope(proxy)
        res = tr.generate(state, proxy, TypeUrl.ROUTE)
        for name, built in res.index.items():
            if not name.isdigit():
                continue
            whole = routes.sidecar_route_config(ctx, proxy, scope, int(name))
            assert built.body == whole.SerializeToString(deterministic=True), (proxy.id, name)
            checked += 1
    return checked


@pytest.mark.parametrize("case", CASES)
def test_spliced_routes_equal_whole_serialization_golden(case: str) -> None:
    state, pxs = _golden(case)
    _assert_same_bytes(state, pxs)


def test_spliced_routes_equal_whole_serialization_hetero(tmp_path: Path) -> None:
    spec = meshgen.MeshSpec(services=120, endpoints=1, namespaces=12, virtual_services=6, hetero=True)
    state = Mesh(spec, meshgen.generate(spec, tmp_path), Aggregator()).load()
    assert _assert_same_bytes(state, proxies(24, 12)) >= 24


def test_virtual_host_serialized_once_for_every_proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = meshgen.MeshSpec(services=40, endpoints=1, namespaces=10, hetero=True)
    state = Mesh(spec, meshgen.generate(spec, tmp_path), Aggregator()).load()
    built: Counter[str] = Counter()
    vhost = routes._vhost

    def counting(*a: object) -> object:
        built[a[2].hostname] += 1  # type: ignore[attr-defined]
        return vhost(*a)  # type: ignore[arg-type]

    monkeypatch.setattr(routes, "_vhost", counting)
    tr = Translator()
    for p in proxies(10, 10):  # one proxy per namespace, ten different scopes, all import ns-0
        tr.generate(state, p, TypeUrl.ROUTE)
    # svc-10.ns-0 (HTTP, no VirtualService) is in every scope: one build; the other
    # variant (ns-0's own proxy: its bare-name domains) reuses the routes' bytes.
    assert built["svc-10.ns-0.svc.cluster.local"] == 1
    # svc-0 has the benchmark's VirtualService (no sourceLabels/sourceNamespace
    # matches, the same DestinationRules everywhere): built once outside ns-0 and
    # once in it, as a default virtual host (it was built per proxy: 10).
    assert built["svc-0.ns-0.svc.cluster.local"] == 2


_VS_MESH = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web, namespace: a}
spec:
  hosts: [web.a.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints: [{address: 10.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: a}
spec:
  hosts: [api.a.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints: [{address: 10.0.0.2}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: a}
spec:
  hosts: [web.a.svc.cluster.local]
  http:
  - route:
    - {destination: {host: web.a.svc.cluster.local}, weight: 80}
    - {destination: {host: api.a.svc.cluster.local}, weight: 20}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: a}
spec:
  hosts: [api.a.svc.cluster.local]
  http:
  - match: [{sourceNamespace: b}]
    route: [{destination: {host: web.a.svc.cluster.local}}]
  - route: [{destination: {host: api.a.svc.cluster.local}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: sticky, namespace: b}
spec:
  host: web.a.svc.cluster.local
  exportTo: ["."]
  trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}
"""


def test_virtual_service_hosts_shared_only_where_the_routes_are_the_same() -> None:
    """A VirtualService's virtual host is shared across namespaces that see the
    same DestinationRules for its destinations (here b sees a consistent-hash one
    the others do not), and never when its matches read the source namespace; each
    proxy's spliced bytes equal its route configuration built whole."""
    loaded = load_text(_VS_MESH, "mesh.yaml")
    assert not loaded.errors
    agg = Aggregator()
    snap = SourceSnapshot(tuple(loaded.configs), tuple(loaded.services), tuple(loaded.endpoint_slices))
    agg.set_source("files", snap)
    state = agg.build()
    pxs = [
        parse_proxy(f"sidecar~10.1.{i}.{j}~p{j}.{ns}~{ns}.svc.cluster.local", {"NAMESPACE": ns})
        for i, ns in enumerate(("a", "b", "c", "d"))
        for j in range(2)
    ]
    assert _assert_same_bytes(state, pxs) == len(pxs)
    tr = Translator()
    bodies = {p.id: tr.generate(state, p, TypeUrl.ROUTE).index["8080"].body for p in pxs}
    by_ns = {p.namespace: bodies[p.id] for p in pxs}
    assert b"x-user" in by_ns["b"] and b"x-user" not in by_ns["c"]
    assert by_ns["c"] == by_ns["d"]  # same view: the same bytes


_DEFAULT_MESH = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web, namespace: a}
spec:
  hosts: [web.a.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints: [{address: 10.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: sticky, namespace: b}
spec:
  host: web.a.svc.cluster.local
  exportTo: ["."]
  trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}
"""


@pytest.mark.parametrize("order", ["abc", "cba", "bca"])
def test_default_vhost_routes_shared_only_with_the_same_destination_rule(order: str) -> None:
    """A default virtual host's routes are shared between the service's own
    namespace (bare-name domains) and the others, but not with a namespace that
    sees another DestinationRule (b: consistent hashing); whichever namespace
    builds first, every proxy's bytes equal its route configuration built whole."""
    loaded = load_text(_DEFAULT_MESH, "mesh.yaml")
    assert not loaded.errors
    agg = Aggregator()
    agg.set_source("files", SourceSnapshot(tuple(loaded.configs), tuple(loaded.services), ()))
    state = agg.build()
    pxs = [
        parse_proxy(f"sidecar~10.1.0.{i}~p.{ns}~{ns}.svc.cluster.local", {"NAMESPACE": ns})
        for i, ns in enumerate(order)
    ]
    assert _assert_same_bytes(state, pxs) == len(pxs)
    tr = Translator()
    by_ns = {p.namespace: tr.generate(state, p, TypeUrl.ROUTE).index["8080"].body for p in pxs}
    assert b"x-user" in by_ns["b"] and b"x-user" not in by_ns["a"] and b"x-user" not in by_ns["c"]
    assert b"\x12\x03web" in by_ns["a"] and b"\x12\x03web" not in by_ns["c"]  # the bare-name domain
    # a and c: the same routes, different domains.
    assert by_ns["a"] != by_ns["c"]
