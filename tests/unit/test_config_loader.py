"""Loader: samples load cleanly; bad input yields precise errors and never stops good documents."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from istiod_py.config.loader import load_directory, load_text

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted((ROOT / "deploy" / "samples").rglob("*.yaml"))


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_every_sample_loads_without_errors(path: Path) -> None:
    result = load_text(path.read_text(), str(path))
    assert [str(e) for e in result.errors] == []
    assert result.configs or result.services or result.endpoint_slices


def test_sample_directory_counts() -> None:
    result = load_directory(ROOT / "deploy" / "samples" / "bookinfo")
    assert result.errors == []
    assert len(result.configs) == 22
    delay = next(c for c in result.configs if c.meta.source.endswith("ratings-test-delay.yaml"))
    assert delay.spec.http[0].fault.delay.fixed_delay.seconds == 7
    assert delay.meta.namespace == "default"


VS_HEAD = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r, namespace: ns}\n"

BAD = [
    (
        VS_HEAD + "spec:\n  hosts: [r]\n  http:\n  - route:\n    - destination: {hots: r}\n",
        "spec.http[0].route[0].destination.hots",
        "did you mean 'host'",
    ),
    (VS_HEAD + "spec:\n  hosts: r\n  http: []\n", "spec.hosts", "expected a list"),
    (
        VS_HEAD + "spec:\n  hosts: [r]\n  http:\n  - timeout: 5 seconds\n    route: [{destination: {host: r}}]\n",
        "spec.http[0].timeout",
        "invalid duration",
    ),
    (
        VS_HEAD + "spec:\n  hosts: [r]\n  http:\n  - route: [{destination: {host: r}, weight: ten}]\n",
        "spec.http[0].route[0].weight",
        "expected an integer",
    ),
    (
        VS_HEAD + "spec:\n  hosts: [r]\n  http:\n  - corsPolicy: {unmatchedPreflights: MAYBE}\n"
        "    route: [{destination: {host: r}}]\n",
        "spec.http[0].corsPolicy.unmatchedPreflights",
        "must be one of",
    ),
    (
        VS_HEAD + "spec:\n  hosts: [r]\n  http:\n  - route: [{destination: {subset: v1}}]\n",
        "spec.http[0].route[0].destination.host",
        "host is required",
    ),
    (
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r, namespace: ns}\n"
        "spec:\n  host: r\n  trafficPolicy: {connectionPool: {tcp: {maxConnections: -1x}}}\n",
        "spec.trafficPolicy.connectionPool.tcp.maxConnections",
        "expected an integer",
    ),
]


@pytest.mark.parametrize(("text", "field", "message"), BAD, ids=lambda v: str(v)[-40:])
def test_bad_document_reports_exactly_one_error(text: str, field: str, message: str) -> None:
    result = load_text(text, "bad.yaml")
    assert result.configs == []
    assert len(result.errors) == 1, [str(e) for e in result.errors]
    err = result.errors[0]
    assert (err.source, err.doc_index, err.namespace, err.name, err.field) == (
        "bad.yaml",
        0,
        "ns",
        "r",
        field,
    )
    assert err.kind in ("VirtualService", "DestinationRule")
    assert message in err.message
    assert "bad.yaml" in str(err) and field in str(err)


def test_yaml_syntax_error_names_file_and_line() -> None:
    text = (
        VS_HEAD
        + "spec:\n  hosts: [r]\n  http: [{route: [{destination: {host: r}}]}]\n"
        + "---\nkind: Gateway\n  bad: [x\n"
    )
    result = load_text(text, "syn.yaml")
    assert len(result.errors) == 1
    err = result.errors[0]
    assert err.source == "syn.yaml" and err.doc_index == 1 and err.line == 9
    assert "YAML syntax error" in str(err) and "syn.yaml:" in str(err)


def test_unknown_kind_is_an_error_naming_the_kind() -> None:
    result = load_text("apiVersion: example.com/v1\nkind: Frobnicator\nmetadata: {name: x}\n", "u.yaml")
    assert len(result.errors) == 1
    assert result.errors[0].kind == "Frobnicator" and "Frobnicator" in str(result.errors[0])


def test_wrong_api_version_is_an_error() -> None:
    result = load_text("apiVersion: security.istio.io/v1alpha3\nkind: PeerAuthentication\nmetadata: {name: x}\n", "v")
    assert len(result.errors) == 1 and result.errors[0].field == "apiVersion"


def test_mix_of_good_and_bad_documents_loads_the_good_ones() -> None:
    good = VS_HEAD + "spec:\n  hosts: [r]\n  http:\n  - route: [{destination: {host: r}}]\n"
    bad = VS_HEAD + "spec:\n  hosts: [r]\n  bogus: 1\n"
    text = "\n---\n".join([good, bad, "", "kind: [unclosed\n", good.replace("name: r", "name: s")])
    result = load_text(text, "mix.yaml")
    assert sorted(c.meta.name for c in result.configs) == ["r", "s"]
    assert [e.doc_index for e in result.errors] == [1, 3]
    assert result.errors[0].field == "spec.bogus"


def test_list_items_and_kube_objects() -> None:
    text = """
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: reviews, namespace: bookinfo, labels: {app: reviews}}
  spec:
    selector: {app: reviews}
    sessionAffinity: None
    ipFamilies: [IPv4]
    ports: [{name: http, port: 9080, targetPort: 9080}, {name: grpc, port: 7070, targetPort: grpc-port}]
  status: {loadBalancer: {}}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: reviews-abc, namespace: bookinfo, labels: {kubernetes.io/service-name: reviews}}
  addressType: IPv4
  endpoints:
  - addresses: [10.0.0.1]
    conditions: {ready: true, serving: true, terminating: false}
    nodeName: n1
    zone: z1
    targetRef: {kind: Pod, name: reviews-v1-x, namespace: bookinfo}
  ports: [{name: http, port: 9080, protocol: TCP}]
- apiVersion: v1
  kind: Service
  metadata: {name: broken}
  spec: {ports: [{port: 99999}]}
- apiVersion: v1
  kind: Service
  metadata: {name: typo}
  spec: {selectr: {app: x}}
"""
    result = load_text(text, "list.yaml")
    assert [s.name for s in result.services] == ["reviews"]
    svc = result.services[0]
    assert svc.namespace == "bookinfo" and svc.ports[1].target_port == "grpc-port" and svc.ports[0].protocol == "TCP"
    (eps,) = result.endpoint_slices
    assert eps.service_name == "reviews" and eps.endpoints[0].conditions.ready is True
    assert [(e.name, e.field) for e in result.errors] == [
        ("broken", "items[2].spec.ports[0].port"),
        ("typo", "items[3].spec.selectr"),
    ]


def test_endpoint_slice_requires_service_name_label() -> None:
    text = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e}\naddressType: IPv4\n"
    result = load_text(text, "e.yaml")
    assert len(result.errors) == 1 and "kubernetes.io/service-name" in result.errors[0].message


def test_load_directory_recursive_and_sorted(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    good = VS_HEAD + "spec:\n  hosts: [r]\n  http:\n  - route: [{destination: {host: r}}]\n"
    (tmp_path / "b" / "two.yml").write_text(good.replace("name: r", "name: two"))
    (tmp_path / "a.yaml").write_text(good.replace("name: r", "name: one"))
    (tmp_path / "ignored.txt").write_text("not: yaml: at: all")
    result = load_directory(tmp_path)
    assert result.errors == []
    assert [c.meta.name for c in result.configs] == ["one", "two"]


def test_missing_directory_is_an_error_not_an_exception(tmp_path: Path) -> None:
    result = load_directory(tmp_path / "nope")
    assert len(result.errors) == 1


def test_non_mapping_document_is_an_error() -> None:
    result = load_text("- just\n- a list\n", "l.yaml")
    assert len(result.errors) == 1


def test_loading_5000_resources_is_fast() -> None:
    doc = (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: r{i}}}\n"
        "spec:\n  hosts: [r{i}]\n  http:\n  - timeout: 5s\n"
        "    route: [{{destination: {{host: r{i}, subset: v1}}}}]\n"
    )
    text = "---\n".join(doc.format(i=i) for i in range(5000))
    start = time.perf_counter()
    result = load_text(text, "big.yaml")
    elapsed = time.perf_counter() - start
    assert result.errors == [] and len(result.configs) == 5000
    assert elapsed < 5.0, elapsed
