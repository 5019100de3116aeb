"""Telemetry translation: Istio's override semantics (root namespace, namespace,
workload), what each feature puts on the HCM / tcp_proxy, and Envoy's own
validator accepting all of it (access logs with CEL filters and OTel ALS, the stats
logger with CEL tags, Zipkin and OpenTelemetry tracers)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.access_loggers.stats.v3 import stats_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import json_format

from istiod_py.model import MeshConfig, Proxy
from istiod_py.model.proxy import parse_proxy
from istiod_py.translate.generate import Translator
from istiod_py.translate.telemetry import resolve
from istiod_py.xds.types import TypeUrl
from tests.support.envoy import envoy_binary
from tests.support.states import mesh_state

SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}, {name: tcp-db, port: 5432}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: default}
spec: {address: 127.9.0.1, labels: {app: reviews, version: v1}, serviceAccount: reviews}
---
apiVersion: v1
kind: Service
metadata: {name: zipkin, namespace: istio-system}
spec:
  ports: [{name: http-zipkin, port: 9411}]
---
apiVersion: v1
kind: Service
metadata: {name: otel, namespace: istio-system}
spec:
  ports: [{name: grpc-otlp, port: 4317}]
"""
MESH = {
    "extensionProviders": [
        {"name": "zipkin", "zipkin": {"service": "zipkin.istio-system.svc.cluster.local", "port": 9411}},
        {"name": "otel-tracing", "opentelemetry": {"service": "otel.istio-system.svc.cluster.local", "port": 4317}},
        {"name": "otel-als", "envoyOtelAls": {"service": "otel.istio-system.svc.cluster.local", "port": 4317}},
        {
            "name": "json",
            "envoyFileAccessLog": {"path": "/dev/stdout", "logFormat": {"labels": {"c": "%RESPONSE_CODE%"}}},
        },
    ]
}


def telemetry(name: str, ns: str, spec: str) -> str:
    head = "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\n"
    return head + f"metadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}"


def proxy(labels: dict[str, str] | None = None, ns: str = "default", ip: str = "127.9.0.1") -> Proxy:
    return parse_proxy(
        f"sidecar~{ip}~reviews-v1.{ns}~{ns}.svc.cluster.local",
        {"NAMESPACE": ns, "LABELS": labels or {"app": "reviews", "version": "v1"}, "INTERCEPTION_MODE": "NONE"},
    )


def view(*docs: str, p: Proxy | None = None, mode: str = resolve.SERVER) -> resolve.TelemetryView:
    t = Translator()
    ctx = t.context(mesh_state(SERVICES, *docs, mesh=MeshConfig.from_dict(MESH)))
    return resolve.view(ctx, p or proxy(), mode)


def listeners(*docs: str, p: Proxy | None = None) -> dict[str, listener_pb2.Listener]:
    out = Translator().generate(
        mesh_state(SERVICES, *docs, mesh=MeshConfig.from_dict(MESH)), p or proxy(), TypeUrl.LISTENER
    )
    result = {}
    for name, built in out.index.items():
        lst = listener_pb2.Listener()
        lst.ParseFromString(built.body)
        result[name] = lst
    return result


def managers(lst: listener_pb2.Listener) -> list[Any]:
    out: list[Any] = []
    for fc in lst.filter_chains:
        for f in fc.filters:
            if f.name.endswith("http_connection_manager"):
                m = hcm.HttpConnectionManager()
                f.typed_config.Unpack(m)
                out.append(m)
            elif f.name.endswith("tcp_proxy"):
                tp = tcp_proxy_pb2.TcpProxy()
                f.typed_config.Unpack(tp)
                out.append(tp)
    return out


MESH_LOGS = telemetry("mesh", "istio-system", "  accessLogging:\n  - providers: [{name: envoy}, {name: json}]\n")


def test_access_log_override_semantics() -> None:
    assert view().access_logs == ()
    assert [s.provider for s in view(MESH_LOGS).access_logs] == ["envoy", "json"]
    # A namespace level naming one provider narrows the set; its filter applies to it.
    ns = telemetry(
        "ns",
        "default",
        "  accessLogging:\n  - providers: [{name: json}]\n    filter: {expression: 'response.code >= 500'}\n",
    )
    assert view(MESH_LOGS, ns).access_logs == (resolve.LogSpec("json", "response.code >= 500"),)
    # A workload level disables it for the selected workload only, and only in its mode.
    wl = telemetry(
        "wl", "default",
        "  selector: {matchLabels: {app: reviews}}\n  accessLogging:\n  - disabled: true\n    match: {mode: SERVER}\n",
    )  # fmt: skip
    assert view(MESH_LOGS, ns, wl).access_logs == ()
    assert view(MESH_LOGS, ns, wl, mode=resolve.CLIENT).access_logs == (
        resolve.LogSpec("json", "response.code >= 500"),
    )
    assert view(MESH_LOGS, ns, wl, p=proxy({"app": "ratings"})).access_logs != ()
    # Another namespace keeps the mesh-wide setting.
    assert [s.provider for s in view(MESH_LOGS, ns, wl, p=proxy(ns="other")).access_logs] == ["envoy", "json"]


def test_metrics_overrides_accumulate_by_level() -> None:
    root = telemetry(
        "mesh", "istio-system",
        "  metrics:\n  - overrides:\n    - match: {metric: ALL_METRICS}\n      tagOverrides: {a: {value: '1'}}\n",
    )  # fmt: skip
    ns = telemetry(
        "ns", "default",
        "  metrics:\n  - overrides:\n    - match: {metric: REQUEST_COUNT, mode: SERVER}\n      disabled: true\n"
        "    - match: {metric: ALL_METRICS}\n      tagOverrides: {a: {operation: REMOVE}}\n",
    )  # fmt: skip
    lst = listeners(root, ns)["127.9.0.1_9080"]
    (m,) = managers(lst)
    stats = [a for a in m.access_log if a.name == "envoy.access_loggers.stats"]
    cfg = stats_pb2.Config()
    stats[0].typed_config.Unpack(cfg)
    assert [c.stat.name for c in cfg.counters] == []  # requests_total disabled on inbound
    assert {h.stat.name for h in cfg.histograms} == {
        "request_duration_milliseconds",
        "request_bytes",
        "response_bytes",
    }
    assert all("a" not in {t.name for t in h.stat.tags} for h in cfg.histograms)
    tags = {t.name: t.value_format for t in cfg.histograms[0].stat.tags}
    assert tags["reporter"] == "destination" and tags["destination_service"] == "reviews.default.svc.cluster.local"
    # Other namespaces keep the mesh-wide tag.
    other = managers(listeners(root, ns, p=proxy(ns="other", ip="127.9.0.2"))["127.0.0.1_9080"])[0]
    cfg2 = stats_pb2.Config()
    next(a for a in other.access_log if a.name == "envoy.access_loggers.stats").typed_config.Unpack(cfg2)
    assert {t.name: t.value_format for t in cfg2.counters[0].stat.tags}["a"] == "%CEL(1)%"


TRACING = telemetry(
    "mesh", "istio-system",
    "  tracing:\n  - providers: [{name: zipkin}]\n    randomSamplingPercentage: 10\n"
    "    customTags: {t: {literal: {value: v}}, h: {header: {name: x-h, defaultValue: d}}}\n",
)  # fmt: skip


def test_tracing_zipkin_sampling_and_tags() -> None:
    (m,) = managers(listeners(TRACING)["127.9.0.1_9080"])
    assert m.tracing.provider.name == "envoy.tracers.zipkin"
    assert m.tracing.random_sampling.value == 10
    assert {t.tag for t in m.tracing.custom_tags} == {"t", "h"}
    # Without a Telemetry tracing provider and no legacy zipkin address: no tracing at all.
    (plain,) = managers(listeners()["127.9.0.1_9080"])
    assert not plain.HasField("tracing")


def test_envoy_validates_every_telemetry_feature(tmp_path: Path) -> None:
    everything = [
        telemetry(
            "mesh",
            "istio-system",
            "  accessLogging:\n  - providers: [{name: envoy}, {name: json}, {name: otel-als}]\n"
            "    filter: {expression: 'response.code >= 400'}\n"
            "  tracing:\n  - providers: [{name: otel-tracing}]\n    randomSamplingPercentage: 1\n"
            "    customTags: {e: {environment: {name: HOME}}}\n"
            "  metrics:\n  - overrides:\n    - match: {metric: REQUEST_COUNT}\n"
            "      tagOverrides: {host: {value: request.host}}\n",
        )
    ]
    lsts = listeners(*everything)
    zipkin_lsts = listeners(TRACING)
    clusters = [
        {
            "name": name,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name, "endpoints": []},
            **({"typed_extension_protocol_options": H2} if "4317" in name else {}),
        }
        for name in (
            "inbound|9080||",
            "inbound|5432||",
            "outbound|9411||zipkin.istio-system.svc.cluster.local",
            "outbound|4317||otel.istio-system.svc.cluster.local",
            "BlackHoleCluster",
            "PassthroughCluster",
        )
    ]
    listeners_json = [json_format.MessageToDict(lst) for lst in lsts.values() if lst.name.startswith("127.9.0.1")]
    listeners_json.append(json_format.MessageToDict(zipkin_lsts["127.9.0.1_9080"]) | {"name": "zipkin"})
    listeners_json[-1]["address"]["socketAddress"]["portValue"] = 9999
    for lj in listeners_json:
        # Static listeners cannot use RDS; the outbound ones are validated by the e2e tests.
        assert "rds" not in json.dumps(lj)
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps({"static_resources": {"listeners": listeners_json, "clusters": clusters}}))
    run = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--use-dynamic-base-id", "-l", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


H2 = {
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}},
    }
}
