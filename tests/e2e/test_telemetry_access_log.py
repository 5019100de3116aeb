"""Access logs end to end: real Envoys (gateway and two sidecars) write the lines
Istio's providers describe, for one request, and Telemetry filters and overrides
change which proxies log what."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.telemetry_mesh import Bookinfo, start_bookinfo
from tests.support.envoy import EnvoyFactory, EnvoyProcess
from tests.support.mesh import Mesh
from tests.support.upstreams import UpstreamFactory

pytestmark = pytest.mark.e2e

# Istio's default text format: [time] "METHOD PATH PROTO" CODE FLAGS DETAILS ... "XFF" "UA" "REQ-ID" "AUTHORITY"
# "UPSTREAM_HOST" UPSTREAM_CLUSTER ...
TEXT_LINE = re.compile(
    r'^\[(?P<time>\d{4}-\d\d-\d\dT[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) (?P<proto>\S+)" '
    r"(?P<code>\d+) (?P<flags>\S+) "
    r'(?P<details>\S+) (?P<term>\S+) "(?P<tfr>[^"]*)" (?P<rx>\d+) (?P<tx>\d+) (?P<duration>\d+) (?P<ust>\S+) '
    r'"(?P<xff>[^"]*)" "(?P<ua>[^"]*)" "(?P<rid>[^"]*)" "(?P<authority>[^"]*)" "(?P<upstream_host>[^"]*)" '
    r"(?P<cluster>\S+) \S+ (?P<local>\S+) \S+ \S+ (?P<route>\S+)$"
)

MESH_LOGGING = """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging:
  - providers:
    - name: envoy
"""
ONLY_5XX = """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging:
  - providers:
    - name: envoy
    filter:
      expression: response.code >= 500
"""
# Namespace default stops logging; the reviews workload turns it back on (and the
# gateway, in istio-system, keeps the mesh-wide setting).
NAMESPACE_OFF = """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: ns-off, namespace: default}
spec:
  accessLogging:
  - providers:
    - name: envoy
    disabled: true
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: reviews-on, namespace: default}
spec:
  selector:
    matchLabels: {app: reviews}
  accessLogging:
  - providers:
    - name: envoy
    disabled: false
"""


@pytest.fixture
def mesh(tmp_path: Path, envoy_factory: EnvoyFactory) -> Iterator[Mesh]:
    # Istio's built-in `envoy` provider and a custom JSON one, both to /dev/stdout:
    # each proxy's lines are in its own output (envoy.log).
    m = Mesh(
        tmp_path,
        envoy_factory,
        mesh_config={
            "extensionProviders": [
                {
                    "name": "json-stdout",
                    "envoyFileAccessLog": {
                        "path": "/dev/stdout",
                        "logFormat": {
                            "labels": {
                                "code": "%RESPONSE_CODE%",
                                "path": "%REQ(:PATH)%",
                                "cluster": "%UPSTREAM_CLUSTER_RAW%",
                                "kind": "custom-json",
                            }
                        },
                    },
                }
            ]
        },
    )
    yield m
    m.stop()


def text_lines(proxy: EnvoyProcess, request_id: str) -> list[dict[str, str]]:
    out = []
    for line in proxy.log_text().splitlines():
        m = TEXT_LINE.match(line)
        if m and m.group("path") == f"/productpage?id={request_id}":
            out.append(m.groupdict())
    return out


def json_lines(proxy: EnvoyProcess, request_id: str) -> list[dict[str, Any]]:
    docs = [json.loads(x) for x in proxy.log_text().splitlines() if x.startswith("{")]
    return [d for d in docs if d.get("path") == f"/productpage?id={request_id}"]


def one_request(b: Bookinfo, status: int = 200) -> str:
    """A request told apart by its path (the gateway replaces an external x-request-id, as Istio's does)."""
    rid = str(uuid.uuid4())
    r = b.get(f"/productpage?id={rid}")
    assert r.status == status, (r.status, r.text[:200])
    return rid


def logged(b: Bookinfo, rid: str) -> dict[str, list[dict[str, str]]]:
    """The text lines of request `rid` per proxy, once every expected proxy wrote them
    (Envoy flushes access logs asynchronously)."""
    return {name: text_lines(p, rid) for name, p in b.proxies.items()}


def wait_logged(b: Bookinfo, rid: str, expect: dict[str, int]) -> dict[str, list[dict[str, str]]]:
    def done() -> dict[str, list[dict[str, str]]] | None:
        got = logged(b, rid)
        return got if {k: len(v) for k, v in got.items()} == expect else None

    try:
        # Envoy writes access logs out every 10 s (--file-flush-interval-msec's default).
        return b.mesh.wait(done, 25, f"access log lines {expect}")  # type: ignore[no-any-return]
    except AssertionError:
        got = logged(b, rid)
        raise AssertionError(f"expected {expect}, got { ({k: len(v) for k, v in got.items()}) }: {got}") from None


def test_text_json_filter_and_namespace_override(mesh: Mesh, upstreams: UpstreamFactory) -> None:
    b = start_bookinfo(mesh, upstreams)
    # No Telemetry and no accessLogFile: Istio's default logs nothing. (Checked once the
    # next request's lines are out: Envoy writes its log buffer in order.)
    unlogged = one_request(b)

    # Mesh-wide Telemetry with the built-in `envoy` provider: Istio's default text format
    # on the gateway, productpage (inbound and outbound) and reviews (inbound).
    mesh.apply(MESH_LOGGING)
    rid = one_request(b)
    got = wait_logged(b, rid, {"gateway": 1, "productpage": 2, "reviews-v1": 1})
    assert all(not v for v in logged(b, unlogged).values())
    gw = got["gateway"][0]
    assert (gw["method"], gw["code"], gw["authority"]) == ("GET", "200", "bookinfo.example.com")
    # One request, one id: the gateway's x-request-id is the one every hop logs.
    assert {d["rid"] for v in got.values() for d in v} == {gw["rid"]}
    assert gw["cluster"] == "outbound|9080||productpage.default.svc.cluster.local"
    pp = sorted(got["productpage"], key=lambda d: d["cluster"])
    assert [d["cluster"] for d in pp] == ["inbound|9080||", "outbound|9080||reviews.default.svc.cluster.local"]
    assert pp[1]["authority"] == "reviews:9080"
    rv = got["reviews-v1"][0]
    assert (rv["cluster"], rv["code"], rv["proto"]) == ("inbound|9080||", "200", "HTTP/1.1")
    assert rv["upstream_host"] == f"{b.reviews_apps['v1'].host}:{b.reviews_apps['v1'].port}"

    # A second provider with a custom JSON format, next to the text one.
    mesh.apply(MESH_LOGGING.replace("    - name: envoy\n", "    - name: envoy\n    - name: json-stdout\n"))
    rid = one_request(b)
    wait_logged(b, rid, {"gateway": 1, "productpage": 2, "reviews-v1": 1})
    docs = {name: json_lines(p, rid) for name, p in b.proxies.items()}
    assert {k: len(v) for k, v in docs.items()} == {"gateway": 1, "productpage": 2, "reviews-v1": 1}
    assert docs["reviews-v1"][0] == {
        "code": 200,
        "path": f"/productpage?id={rid}",
        "cluster": "inbound|9080||",
        "kind": "custom-json",
    }

    # filter.expression (CEL): only 5xx are logged.
    mesh.apply(ONLY_5XX)
    ok_rid = one_request(b)
    b.reviews_apps["v1"].state.fixed_status(500)
    bad_rid = one_request(b, 500)
    b.reviews_apps["v1"].state.fixed_status(None)
    got = wait_logged(b, bad_rid, {"gateway": 1, "productpage": 2, "reviews-v1": 1})
    assert {d["code"] for v in got.values() for d in v} == {"500"}
    assert all(not v for v in logged(b, ok_rid).values())

    # Override semantics: namespace default disables logging, a workload Telemetry re-enables
    # it for reviews; the gateway (istio-system) keeps the mesh-wide filter.
    mesh.apply(NAMESPACE_OFF)
    # reviews inherits the mesh-wide 5xx filter (a level without `filter` keeps it).
    ok_rid = one_request(b)
    b.reviews_apps["v1"].state.fixed_status(500)
    rid = one_request(b, 500)
    b.reviews_apps["v1"].state.fixed_status(None)
    wait_logged(b, rid, {"gateway": 1, "productpage": 0, "reviews-v1": 1})
    assert all(not v for v in logged(b, ok_rid).values())


def test_mesh_config_access_log_file_json(
    tmp_path: Path, envoy_factory: EnvoyFactory, upstreams: UpstreamFactory
) -> None:
    """meshConfig.accessLogFile + accessLogEncoding JSON, no Telemetry: Istio's default JSON keys, to a file."""
    log_file = tmp_path / "access.log"
    mesh = Mesh(tmp_path, envoy_factory, mesh_config={"accessLogFile": str(log_file), "accessLogEncoding": "JSON"})
    try:
        b = start_bookinfo(mesh, upstreams)
        rid = one_request(b)

        def lines() -> list[dict[str, Any]]:
            if not log_file.exists():
                return []
            docs = [json.loads(x) for x in log_file.read_text().splitlines() if x.startswith("{")]
            return [d for d in docs if d.get("path") == f"/productpage?id={rid}"]

        docs = mesh.wait(lambda: len(lines()) == 4 and lines(), 25, "4 JSON lines")
        keys = {
            "start_time", "route_name", "method", "path", "protocol", "response_code", "response_flags",
            "response_code_details", "connection_termination_details", "bytes_received", "bytes_sent", "duration",
            "upstream_service_time", "x_forwarded_for", "user_agent", "request_id", "authority", "upstream_host",
            "upstream_cluster", "upstream_local_address", "downstream_local_address", "downstream_remote_address",
            "requested_server_name", "upstream_transport_failure_reason",
        }  # fmt: skip
        for d in docs:
            assert set(d) == keys, set(d) ^ keys
            assert d["method"] == "GET" and d["response_code"] == 200
        assert sorted(d["upstream_cluster"] for d in docs) == [
            "inbound|9080||",
            "inbound|9080||",
            "outbound|9080||productpage.default.svc.cluster.local",
            "outbound|9080||reviews.default.svc.cluster.local",
        ]
    finally:
        mesh.stop()
