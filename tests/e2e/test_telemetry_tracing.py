"""Traces end to end: every hop (gateway, productpage in and out, reviews) reports a
span to a real Jaeger (built from Go modules), with parent links following the
request; Zipkin (B3) and OpenTelemetry (W3C) providers; custom tags; sampling."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.telemetry_mesh import Bookinfo, start_bookinfo
from tests.support.envoy import EnvoyFactory
from tests.support.jaeger import Jaeger
from tests.support.mesh import Mesh
from tests.support.upstreams import UpstreamFactory

pytestmark = pytest.mark.e2e

PROVIDERS = [
    {"name": "zipkin", "zipkin": {"service": "zipkin.istio-system.svc.cluster.local", "port": 9411}},
    {
        "name": "otel-tracing",
        "opentelemetry": {"service": "otel-collector.istio-system.svc.cluster.local", "port": 4317},
    },
]


def collector_services(j: Jaeger) -> str:
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: zipkin, namespace: istio-system}}
spec:
  selector: {{app: jaeger}}
  ports: [{{name: http-zipkin, port: 9411}}]
---
apiVersion: v1
kind: Service
metadata: {{name: otel-collector, namespace: istio-system}}
spec:
  selector: {{app: jaeger}}
  ports: [{{name: grpc-otlp, port: 4317}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: jaeger, namespace: istio-system}}
spec:
  address: {j.host}
  ports: {{http-zipkin: {j.zipkin_port}, grpc-otlp: {j.otlp_grpc_port}}}
  labels: {{app: jaeger}}
"""


ZIPKIN_ALL = """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing:
  - providers:
    - name: zipkin
    randomSamplingPercentage: 100.00
    customTags:
      "provider":
        literal:
          value: "zipkin"
      "my_tag_header":
        header:
          name: x-my-header
          defaultValue: "foo"
"""
OTEL_ONE_PERCENT = """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing:
  - providers:
    - name: otel-tracing
    randomSamplingPercentage: 1
"""


@pytest.fixture
def jaeger(tmp_path: Path) -> Iterator[Jaeger]:
    j = Jaeger(tmp_path / "jaeger").start()
    yield j
    j.stop()


@pytest.fixture
def mesh(tmp_path: Path, envoy_factory: EnvoyFactory) -> Iterator[Mesh]:
    m = Mesh(tmp_path, envoy_factory, mesh_config={"extensionProviders": PROVIDERS})
    yield m
    m.stop()


def tags(span: dict[str, Any]) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span.get("tags", [])}


def trace_of(j: Jaeger, service: str, marker: str) -> dict[str, Any] | None:
    for t in j.traces(service):
        if any(marker in str(tags(s).get("http.url", "")) for s in t["spans"]):
            return t
    return None


def check_chain(trace: dict[str, Any]) -> list[tuple[str, str]]:
    """The spans as (service, kind), root first, each the parent of the next."""
    spans = trace["spans"]
    procs = trace["processes"]
    by_id = {s["spanID"]: s for s in spans}
    parent = {s["spanID"]: next((r["spanID"] for r in s.get("references", []) if r["refType"] == "CHILD_OF"), None)
              for s in spans}  # fmt: skip
    roots = [s for s in spans if parent[s["spanID"]] not in by_id]
    assert len(roots) == 1, [(procs[s["processID"]]["serviceName"], parent[s["spanID"]]) for s in spans]
    chain, cur = [], roots[0]
    while cur is not None:
        chain.append((procs[cur["processID"]]["serviceName"], str(tags(cur).get("span.kind", ""))))
        children = [s for s in spans if parent[s["spanID"]] == cur["spanID"]]
        assert len(children) <= 1, children
        cur = children[0] if children else None
    assert len(chain) == len(spans)
    return chain


def one(b: Bookinfo, headers: dict[str, str] | None = None) -> str:
    marker = str(uuid.uuid4())
    assert b.get(f"/productpage?id={marker}", headers=headers).status == 200
    return marker


def test_zipkin_b3_spans_per_hop_custom_tags_then_otel_w3c_sampling(
    mesh: Mesh, upstreams: UpstreamFactory, jaeger: Jaeger
) -> None:
    b = start_bookinfo(mesh, upstreams, extra=collector_services(jaeger))
    gw_service = "istio-ingressgateway.istio-system"
    mesh.apply(ZIPKIN_ALL)
    marker = one(b, {"x-my-header": "bar"})
    trace = mesh.wait(lambda: trace_of(jaeger, gw_service, marker), 20, "the zipkin trace in jaeger")
    trace = mesh.wait(
        lambda: (t := trace_of(jaeger, gw_service, marker)) is not None and len(t["spans"]) >= 4 and t, 20, "4 spans"
    )
    chain = check_chain(trace)
    assert [svc for svc, _ in chain] == [
        gw_service,
        "productpage-v1.default",
        "productpage-v1.default",
        "reviews-v1.default",
    ], chain
    assert [kind for _, kind in chain] == ["client", "server", "client", "server"], chain
    gw_span = next(s for s in trace["spans"] if trace["processes"][s["processID"]]["serviceName"] == gw_service)
    assert tags(gw_span)["provider"] == "zipkin" and tags(gw_span)["my_tag_header"] == "bar"
    rv_span = next(
        s for s in trace["spans"] if trace["processes"][s["processID"]]["serviceName"] == "reviews-v1.default"
    )
    # The app forwards only the trace headers: the header tag falls back to its default.
    assert tags(rv_span)["my_tag_header"] == "foo"

    # OpenTelemetry provider (W3C traceparent between hops) at 1 % sampling.
    mesh.apply(OTEL_ONE_PERCENT)
    n = 1000
    markers = [one(b) for _ in range(n)]
    otel_gw = "unknown.istio-system"  # app label absent on the gateway: Istio's "unknown" canonical name

    def sampled() -> list[dict[str, Any]]:
        wanted = set(markers)
        got = []
        for t in jaeger.traces(otel_gw) if otel_gw in jaeger.services() else []:
            urls = {str(tags(s).get("http.url", "")).rsplit("=", 1)[-1] for s in t["spans"]}
            if urls & wanted:
                got.append(t)
        return got

    import time

    time.sleep(3)  # the batch exporters flush every few seconds
    traces = sampled()
    # About 1 %: 10 expected; binomial 4 sd bounds.
    assert 0 < len(traces) <= 23, len(traces)
    for t in traces:
        chain = check_chain(t)
        assert [svc for svc, _ in chain] == [otel_gw, "productpage.default", "productpage.default", "reviews.default"]
