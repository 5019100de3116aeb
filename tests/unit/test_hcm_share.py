"""The outbound HTTP filter chain (HCM) is built once per state for every proxy
it is the same for (sidecar/listeners.py `_outbound_http_chain`, issue 18): the
proxies that differ in what its key holds (telemetry, the Sidecar scope when a
tracer is configured) still get their own bytes, and the others share."""

from __future__ import annotations

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm

from istiod_py.model import MeshConfig, MeshState, Proxy
from istiod_py.model.proxy import parse_proxy
from istiod_py.translate.generate import Translator
from istiod_py.translate.telemetry import resolve
from istiod_py.translate.telemetry.resolve import cache_key
from istiod_py.xds.types import TypeUrl
from tests.support.states import mesh_state
from tests.unit.test_telemetry_translate import MESH, SERVICES, TRACING, telemetry

LISTENER = "127.0.0.1_9080"  # outbound, captureMode NONE


def _proxy(name: str, labels: dict[str, str], ip: str) -> Proxy:
    return parse_proxy(
        f"sidecar~{ip}~{name}.default~default.svc.cluster.local",
        {"NAMESPACE": "default", "LABELS": labels, "INTERCEPTION_MODE": "NONE"},
    )


def _state(*docs: str) -> MeshState:
    return mesh_state(SERVICES, *docs, mesh=MeshConfig.from_dict(MESH))


def _outbound(tr: Translator, state: MeshState, p: Proxy) -> tuple[bytes, hcm.HttpConnectionManager]:
    built = tr.generate(state, p, TypeUrl.LISTENER).get(LISTENER)
    assert built is not None, p.id
    lst = listener_pb2.Listener.FromString(built.body)
    m = hcm.HttpConnectionManager()
    (chain,) = lst.filter_chains
    chain.filters[-1].typed_config.Unpack(m)
    return built.body, m


def test_workload_telemetry_gives_its_own_chain() -> None:
    logs = telemetry(
        "wl", "default", "  selector: {matchLabels: {app: a}}\n  accessLogging:\n  - providers: [{name: envoy}]\n"
    )
    state = _state(logs)
    tr = Translator()
    body_b, m_b = _outbound(tr, state, _proxy("b", {"app": "b"}, "127.9.1.2"))
    body_a, m_a = _outbound(tr, state, _proxy("a", {"app": "a"}, "127.9.1.1"))
    body_b2, _ = _outbound(tr, state, _proxy("b2", {"app": "b"}, "127.9.1.3"))
    assert body_a != body_b
    assert [a.name for a in m_a.access_log if a.name == "envoy.access_loggers.file"]
    assert not [a.name for a in m_b.access_log if a.name == "envoy.access_loggers.file"]
    assert body_b2 == body_b


SIDECAR_BLIND = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: blind, namespace: default}
spec:
  workloadSelector: {labels: {role: blind}}
  egress: [{hosts: ["./*"]}]
"""


def test_tracer_outside_the_scope_gives_its_own_chain() -> None:
    # Same telemetry views (same app label, no workload Telemetry); only the
    # Sidecar scope differs: the zipkin collector is not visible to `blind`.
    state = _state(TRACING, SIDECAR_BLIND)
    tr = Translator()
    seeing = _proxy("seeing", {"app": "x"}, "127.9.2.1")
    blind = _proxy("blind", {"app": "x", "role": "blind"}, "127.9.2.2")
    ctx = tr.context(state)
    assert cache_key(ctx, seeing) == cache_key(ctx, blind)
    body_s, m_s = _outbound(tr, state, seeing)
    body_b, m_b = _outbound(tr, state, blind)
    assert m_s.HasField("tracing") and not m_b.HasField("tracing")
    assert body_s != body_b
    # Built alone, each is what it was with the shared chains.
    for p, body in ((seeing, body_s), (blind, body_b)):
        assert _outbound(Translator(), state, p)[0] == body


def test_telemetry_views_shared_by_levels_only() -> None:
    """Views are memoized by the Telemetry resources in effect (and the tracer's
    service name): one context, proxies differing in either get their own."""
    logs = telemetry(
        "wl", "default", "  selector: {matchLabels: {app: a}}\n  accessLogging:\n  - providers: [{name: envoy}]\n"
    )
    tr = Translator()
    ctx = tr.context(_state(logs, TRACING))
    a = _proxy("a", {"app": "a"}, "127.9.3.1")
    b = _proxy("b", {"app": "b"}, "127.9.3.2")
    b2 = _proxy("b2", {"app": "b", "v": "2"}, "127.9.3.3")
    c = _proxy("c", {"app": "c"}, "127.9.3.4")  # b's levels, another service name
    va, vb, vb2, vc = (resolve.view(ctx, p, resolve.CLIENT) for p in (a, b, b2, c))
    assert [s.provider for s in va.access_logs] == ["envoy"] and vb.access_logs == ()
    assert (va.service_name, vb.service_name) == ("a.default", "b.default")
    assert vb2 is vb  # same levels, same service name: the same view
    assert vc.service_name == "c.default" and vc.tracing == vb.tracing
    # A fresh context builds each alone: the same values.
    for p, v in ((a, va), (b, vb), (b2, vb2), (c, vc)):
        assert resolve.view(Translator().context(_state(logs, TRACING)), p, resolve.CLIENT) == v
