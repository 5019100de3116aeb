"""Outbound listeners of HTTP-only ports and of opaque (TCP) ports are built
once per state for every proxy with the same key (sidecar/listeners.py
`outbound_listener_builds`, issue 18): each proxy's bytes equal its listeners
built alone, and proxies that differ in a key field (bind, a TCP service on the
port, the TCP chains, telemetry) get their own."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from benchmarks import meshgen
from benchmarks.hetero import Mesh, proxies
from istiod_py.cache.resources import Built, build
from istiod_py.config.loader import load_text
from istiod_py.model import MeshState, Proxy, parse_proxy
from istiod_py.registry.aggregate import Aggregator, SourceSnapshot
from istiod_py.translate.features import with_tcp_features
from istiod_py.translate.generate import Translator
from istiod_py.translate.sidecar import listeners as lds
from istiod_py.xds.types import TypeUrl

_MESH = """
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
metadata: {name: db, namespace: b}
spec:
  hosts: [db.b.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: tcp, protocol: TCP}]
  endpoints: [{address: 10.0.0.2}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: only-a, namespace: a}
spec:
  egress: [{hosts: ["a/*"]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: only-a, namespace: e}
spec:
  egress: [{hosts: ["a/*"]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: both, namespace: c}
spec:
  egress: [{hosts: ["a/*", "b/*"]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: bound, namespace: d}
spec:
  egress: [{bind: 127.0.0.2, hosts: ["a/*"]}]
"""


def _state() -> MeshState:
    loaded = load_text(_MESH, "mesh.yaml")
    assert not loaded.errors
    agg = Aggregator()
    agg.set_source("files", SourceSnapshot(tuple(loaded.configs), tuple(loaded.services), ()))
    return agg.build()


def _proxy(ns: str, i: int) -> Proxy:
    return parse_proxy(
        f"sidecar~10.1.0.{i}~p{i}.{ns}~{ns}.svc.cluster.local",
        {"NAMESPACE": ns, "INTERCEPTION_MODE": "NONE", "LABELS": {"app": f"p{i}"}},
    )


def _alone(state: MeshState, proxy: Proxy) -> dict[str, bytes]:
    """The proxy's outbound listeners built one by one, without sharing."""
    ctx = Translator().context(state)
    scope = ctx.sidecar_scope(proxy)
    out: dict[str, bytes] = {}
    for lst in lds.outbound_listeners(ctx, proxy, scope):
        b = build(lst.name, TypeUrl.LISTENER, with_tcp_features(ctx, proxy, "outbound", lst))
        out[b.name] = b.body
    return out


def _generated(tr: Translator, state: MeshState, proxy: Proxy) -> dict[str, Built]:
    res = tr.generate(state, proxy, TypeUrl.LISTENER)
    return {n: b for n, b in res.index.items() if not n.startswith("10.")}  # outbound only


@pytest.mark.parametrize("order", ["acde", "edca", "cade"])
def test_http_only_listener_shared_where_its_key_is_the_same(order: str) -> None:
    state = _state()
    tr = Translator()
    pxs = [_proxy(ns, i) for i, ns in enumerate(order)]
    got = {p.namespace: _generated(tr, state, p) for p in pxs}
    for p in pxs:
        assert {n: b.body for n, b in got[p.namespace].items()} == _alone(state, p), p.id
    # a and e: the same HTTP-only port, one Built shared.
    assert got["a"]["127.0.0.1_8080"] is got["e"]["127.0.0.1_8080"]
    # c: a TCP service on the port too (sniffing chains): its own listener.
    assert got["c"]["127.0.0.1_8080"].body != got["a"]["127.0.0.1_8080"].body
    assert b"db.b.svc.cluster.local" in got["c"]["127.0.0.1_8080"].body
    # d: another bind address, another listener.
    assert set(got["d"]) == {"127.0.0.2_8080"}


def test_telemetry_difference_gives_its_own_listener() -> None:
    telemetry = """
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: logs, namespace: e}
spec:
  accessLogging:
  - providers: [{name: envoy}]
"""
    loaded = load_text(_MESH + telemetry, "mesh.yaml")
    assert not loaded.errors
    agg = Aggregator()
    agg.set_source("files", SourceSnapshot(tuple(loaded.configs), tuple(loaded.services), ()))
    state = agg.build()
    tr = Translator()
    a, e = _proxy("a", 1), _proxy("e", 2)
    la, le = _generated(tr, state, a), _generated(tr, state, e)
    assert la["127.0.0.1_8080"].body != le["127.0.0.1_8080"].body
    assert b"envoy.access_loggers.file" in le["127.0.0.1_8080"].body
    assert b"envoy.access_loggers.file" not in la["127.0.0.1_8080"].body
    for p, got in ((a, la), (e, le)):
        assert {n: b.body for n, b in got.items()} == _alone(state, p)


def test_hetero_mesh_listeners_equal_alone_and_built_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = meshgen.MeshSpec(services=40, endpoints=1, namespaces=10, hetero=True)
    state = Mesh(spec, meshgen.generate(spec, tmp_path), Aggregator()).load()
    built: Counter[tuple[str, int]] = Counter()
    make = lds._outbound_listener

    def counting(*a: object, **kw: object) -> object:
        op: tuple[object, str, int, bool, bool] = a[3]  # type: ignore[assignment]
        built[(op[1], op[2])] += 1
        return make(*a, **kw)  # type: ignore[arg-type]

    tr = Translator()
    pxs = proxies(20, 10)
    monkeypatch.setattr(lds, "_outbound_listener", counting)
    got = {p.id: _generated(tr, state, p) for p in pxs}
    monkeypatch.setattr(lds, "_outbound_listener", make)
    for p in pxs:
        assert {n: b.body for n, b in got[p.id].items()} == _alone(state, p), p.id
    # The HTTP port every scope has (ten scopes, twenty proxies): one listener build.
    having = Counter(n for g in got.values() for n in g)
    name, count = having.most_common(1)[0]
    assert count == len(pxs)
    bind, _, port = name.rpartition("_")
    assert built[(bind, int(port))] == 1, built
    assert len({id(g[name]) for g in got.values()}) == 1


_TCP_MESH = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: cache, namespace: b}
spec:
  hosts: [cache.b.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9000, name: tcp, protocol: TCP}]
  endpoints: [{address: 10.0.0.3}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: aaa, namespace: h}
spec:
  hosts: [aaa.h.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9000, name: tcp, protocol: TCP}]
  endpoints: [{address: 10.0.0.4}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: b-only, namespace: f}
spec:
  egress: [{hosts: ["b/*"]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: b-and-a, namespace: g}
spec:
  egress: [{hosts: ["b/*", "a/*"]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: b-and-h, namespace: h}
spec:
  egress: [{hosts: ["b/*", "h/*"]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: b-only, namespace: t}
spec:
  egress: [{hosts: ["b/*"]}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: logs, namespace: t}
spec:
  accessLogging:
  - providers: [{name: envoy}]
"""


@pytest.mark.parametrize("order", ["fght", "thgf", "gtfh"])
def test_tcp_listener_shared_where_its_chains_and_telemetry_are_the_same(order: str) -> None:
    """f and g (different scopes) send port 9000 to cache.b alone: one listener.
    h has another TCP service on the port (aaa.h sorts first and takes the plain
    TCP match) and t logs every connection: each gets its own bytes."""
    loaded = load_text(_MESH + "---" + _TCP_MESH, "mesh.yaml")
    assert not loaded.errors
    agg = Aggregator()
    agg.set_source("files", SourceSnapshot(tuple(loaded.configs), tuple(loaded.services), ()))
    state = agg.build()
    tr = Translator()
    pxs = [_proxy(ns, i) for i, ns in enumerate(order)]
    got = {p.namespace: _generated(tr, state, p) for p in pxs}
    for p in pxs:
        assert {n: b.body for n, b in got[p.namespace].items()} == _alone(state, p), p.id
    name = "127.0.0.1_9000"
    assert got["f"][name] is got["g"][name]
    assert got["h"][name].body != got["f"][name].body and b"aaa.h" in got["h"][name].body
    assert got["t"][name].body != got["f"][name].body
    assert b"envoy.access_loggers.file" in got["t"][name].body
    assert b"envoy.access_loggers.file" not in got["f"][name].body
