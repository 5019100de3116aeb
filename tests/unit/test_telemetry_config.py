"""The Telemetry kind (v1 and v1alpha1) and mesh config's telemetry fields load strictly.

The YAML documents are those of Istio's telemetry tasks (istio.io tasks/observability:
logs/access-log, logs/telemetry-api, metrics/telemetry-api, distributed-tracing) and
samples/open-telemetry, unchanged."""

from __future__ import annotations

import pytest

from istiod_py.config.loader import load_text
from istiod_py.model import MeshConfig
from istiod_py.model.mesh import MeshConfigError

ISTIO_TASK_TELEMETRY = """
apiVersion: telemetry.istio.io/v1alpha1
kind: Telemetry
metadata:
  name: mesh-logging-default
  namespace: istio-system
spec:
  accessLogging:
  - providers:
    - name: envoy
---
apiVersion: telemetry.istio.io/v1alpha1
kind: Telemetry
metadata:
  name: disable-details-logging
  namespace: istio-system
spec:
  selector:
    matchLabels:
      app: details
  accessLogging:
  - providers:
    - name: envoy
    disabled: true
---
apiVersion: telemetry.istio.io/v1alpha1
kind: Telemetry
metadata:
  name: disable-details-inbound-logging
  namespace: istio-system
spec:
  selector:
    matchLabels:
      app: details
  accessLogging:
  - providers:
    - name: envoy
    match:
      mode: SERVER
    disabled: true
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata:
  name: mesh-logging
  namespace: istio-system
spec:
  accessLogging:
    - providers:
        - name: otel
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata:
  name: sleep-logging
spec:
  selector:
    matchLabels:
      app: sleep
  accessLogging:
  - providers:
    - name: otel
    filter:
      expression: response.code >= 400
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata:
  name: filter-sleep-logging
spec:
  accessLogging:
  - providers:
    - name: otel
    filter:
      expression: response.code >= 400 || xds.cluster_name == "outbound|80||httpbin.default.svc.cluster.local"
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata:
  name: remove-tags
  namespace: istio-system
spec:
  metrics:
    - providers:
        - name: prometheus
      overrides:
        - match:
            mode: CLIENT_AND_SERVER
            metric: REQUEST_COUNT
          tagOverrides:
            grpc_response_status:
              operation: REMOVE
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata:
  name: custom-tags
  namespace: istio-system
spec:
  metrics:
    - overrides:
        - match:
            metric: ALL_METRICS
            mode: CLIENT
          tagOverrides:
            destination_x:
              value: filter_state["upstream_peer"].labels['app'].value
        - match:
            metric: ALL_METRICS
            mode: SERVER
          tagOverrides:
            source_x:
              value: filter_state["downstream_peer"].labels['app'].value
      providers:
        - name: prometheus
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata:
  name: disable-metrics
  namespace: istio-system
spec:
  metrics:
    - providers:
        - name: prometheus
      overrides:
        - disabled: true
          match:
            mode: CLIENT_AND_SERVER
            metric: ALL_METRICS
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata:
  name: otel-demo
spec:
  tracing:
  - providers:
    - name: otel-tracing
    randomSamplingPercentage: 0
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata:
  name: mesh-default
  namespace: istio-system
spec:
  tracing:
  - providers:
    - name: zipkin
    randomSamplingPercentage: 100.00
    customTags:
      "provider":
        literal:
          value: "zipkin"
      "cluster_id":
        environment:
          name: ISTIO_META_CLUSTER_ID
          defaultValue: Kubernetes
      "my_tag_header":
        header:
          name: x-my-header
          defaultValue: "foo"
"""


def _load(text: str) -> tuple[list[str], list[str]]:
    res = load_text(text, "t.yaml")
    return [c.meta.name for c in res.configs], [str(e) for e in res.errors]


def test_istio_task_telemetry_loads_unchanged() -> None:
    names, errors = _load(ISTIO_TASK_TELEMETRY)
    assert errors == []
    assert len(names) == 11
    assert "remove-tags" in names and "mesh-default" in names


def _telemetry(spec: str, version: str = "v1") -> str:
    head = f"apiVersion: telemetry.istio.io/{version}\nkind: Telemetry\n"
    return head + f"metadata: {{name: t, namespace: ns}}\nspec:\n{spec}"


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ("  tracing: [{randomSamplingPercentage: 101}]\n", "spec.tracing[0].randomSamplingPercentage", "between"),
        (
            "  accessLogging: [{filter: {expression: 'response.code >='}}]\n",
            "spec.accessLogging[0].filter.expression",
            "not a valid CEL expression",
        ),
        (
            "  metrics: [{overrides: [{tagOverrides: {a: {operation: REMOVE, value: x}}}]}]\n",
            "spec.metrics[0].overrides[0].tagOverrides.a.value",
            "must not be set",
        ),
        (
            "  metrics: [{overrides: [{tagOverrides: {a: {operation: UPSERT}}}]}]\n",
            "spec.metrics[0].overrides[0].tagOverrides.a.value",
            "required",
        ),
        ("  tracing: [{customTags: {a: {}}}]\n", "spec.tracing[0].customTags.a", "set one of"),
        ("  metrics: [{overides: []}]\n", "spec.metrics[0].overides", "did you mean 'overrides'"),
        ("  accessLogging: [{providers: [{}]}]\n", "spec.accessLogging[0].providers[0].name", "required"),
        (
            "  selector: {matchLabels: {app: a}}\n  targetRefs: [{kind: Gateway, name: g}]\n",
            "spec.selector",
            "not both",
        ),
        ("  targetRefs: [{kind: Gateway, name: g}]\n", "spec.targetRefs", "not supported by istiod_py yet"),
        ("  metrics: [{reportingInterval: 5s}]\n", "spec.metrics[0].reportingInterval", "not supported"),
        (
            "  tracing: [{disableContextPropagation: true}]\n",
            "spec.tracing[0].disableContextPropagation",
            "not supported",
        ),
    ],
)
def test_telemetry_errors_name_the_field(spec: str, field: str, message: str) -> None:
    res = load_text(_telemetry(spec), "t.yaml")
    assert res.configs == []
    assert any(e.field == field and message in e.message and e.kind == "Telemetry" for e in res.errors), res.errors


def test_telemetry_versions_served() -> None:
    assert _load(_telemetry("  accessLogging: [{providers: [{name: envoy}]}]\n", "v1alpha1"))[1] == []
    errors = _load(_telemetry("  accessLogging: []\n", "v2"))[1]
    assert errors and "telemetry.istio.io/v1alpha1, telemetry.istio.io/v1" in errors[0]


def test_mesh_config_telemetry_fields() -> None:
    mesh = MeshConfig.from_dict(
        {
            "accessLogFile": "/dev/stdout",
            "accessLogEncoding": "JSON",
            "accessLogFormat": "[%START_TIME%] %RESPONSE_CODE%\n",
            "enableTracing": True,
            "defaultConfig": {"tracing": {"sampling": 10, "zipkin": {"address": "zipkin.istio-system:9411"}}},
            "defaultProviders": {"metrics": ["prometheus"], "accessLogging": ["envoy"], "tracing": ["otel-tracing"]},
            "extensionProviders": [
                {
                    "name": "otel-tracing",
                    "opentelemetry": {
                        "service": "otel.observability.svc.cluster.local",
                        "port": 4317,
                        "resource_detectors": {"environment": {}},
                    },
                },
                {"name": "zipkin", "zipkin": {"service": "zipkin.istio-system.svc.cluster.local", "port": 9411}},
                {"name": "otel", "envoyOtelAls": {"service": "otel.observability.svc.cluster.local", "port": 4317}},
                {
                    "name": "json-log",
                    "envoyFileAccessLog": {"path": "/dev/stdout", "logFormat": {"labels": {"code": "%RESPONSE_CODE%"}}},
                },
                {"name": "prom", "prometheus": {}},
                {"name": "authz", "envoyExtAuthzHttp": {"service": "a.ns.svc.cluster.local", "port": 8000}},
            ],
        }
    )
    t = mesh.telemetry
    assert (t.access_log_file, t.access_log_encoding, t.enable_tracing) == ("/dev/stdout", "JSON", True)
    assert t.default_tracing is not None and t.default_tracing.sampling == 10
    assert list(t.default_providers.tracing) == ["otel-tracing"]
    p = t.provider("json-log")
    assert p is not None and p.envoy_file_access_log.log_format.labels["code"] == "%RESPONSE_CODE%"
    # Istio's built-in providers stay available next to the user's.
    assert t.provider("envoy") is not None and t.provider("prometheus") is not None
    # ext_authz still reads the raw mapping.
    assert any(p.get("name") == "authz" for p in mesh.extension_providers)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"accessLogEncoding": "XML"}, "accessLogEncoding 'XML'"),
        ({"extensionProviders": [{"name": "z", "zipkin": {"servce": "a"}}]}, "extensionProviders[0].zipkin.servce"),
        ({"extensionProviders": [{"name": "z"}]}, "sets no provider kind"),
        ({"defaultProviders": {"tracing": ["nope"]}}, "provider 'nope' is not in extensionProviders"),
        ({"defaultConfig": {"tracing": {"sampling": 101}}}, "sampling must be between 0 and 100"),
        ({"enableTracing": "yes"}, "enableTracing must be true or false"),
    ],
)
def test_mesh_config_telemetry_errors(raw: dict[str, object], message: str) -> None:
    with pytest.raises(MeshConfigError, match=None) as info:
        MeshConfig.from_dict(raw, "mesh.yaml")
    assert message in str(info.value) and "mesh.yaml" in str(info.value)
