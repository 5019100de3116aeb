"""Whatever valid Istio config a user writes, Envoy accepts what we make of it.

Hypothesis writes random VirtualServices (matches, weights, retries, faults,
rewrites, header edits, mirrors, timeouts), DestinationRules (subsets, load
balancing, connection pools, outlier detection, TLS), ServiceEntries and
Sidecars. Only documents the project's loader accepts are kept (what a user
can apply). Each mesh is translated for a sidecar and for a gateway, written as
a static Envoy bootstrap (EDS and RDS inlined, as an ACK would see them) and
checked by the real `envoy --mode validate`: zero rejections is the property.

Envoy takes ~0.3 s per check, so CI runs a few dozen examples;
HYPOTHESIS_PROFILE=long runs more.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import json_format
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from istiod_py.config.loader import load_text
from istiod_py.model import MeshConfig, Proxy, parse_proxy
from istiod_py.registry.aggregate import Aggregator, SourceSnapshot
from istiod_py.translate.generate import Translator
from istiod_py.xds.types import TypeUrl
from tests.support.envoy import envoy_binary

pytestmark = pytest.mark.timeout(600)

HCM_NAME = "envoy.filters.network.http_connection_manager"

MESH = """\
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: default}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}, {name: grpc-api, port: 7070}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec:
  selector: {app: db}
  ports: [{name: tcp, port: 3306}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: default}
spec: {address: 127.30.0.11, labels: {app: reviews, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v2, namespace: default}
spec: {address: 127.30.0.12, labels: {app: reviews, version: v2}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ratings-v1, namespace: default}
spec: {address: 127.30.0.13, labels: {app: ratings, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: db-1, namespace: default}
spec: {address: 127.30.0.14, labels: {app: db}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
"""

SIDECAR = parse_proxy(
    "sidecar~127.30.0.20~productpage-v1.default~default.svc.cluster.local",
    {"NAMESPACE": "default", "LABELS": {"app": "productpage", "version": "v1"}, "INTERCEPTION_MODE": "NONE"},
)
# The same workload with iptables capture: virtualOutbound/virtualInbound and their chains.
CAPTURED = parse_proxy(
    "sidecar~127.30.0.20~productpage-v1.default~default.svc.cluster.local",
    {"NAMESPACE": "default", "LABELS": {"app": "productpage", "version": "v1"}, "INTERCEPTION_MODE": "REDIRECT"},
)
GATEWAY = parse_proxy(
    "router~127.30.0.30~gw-1.default~default.svc.cluster.local",
    {"NAMESPACE": "default", "LABELS": {"istio": "ingressgateway"}, "INTERCEPTION_MODE": "NONE"},
)

# --- strategies: Istio documents as dicts ------------------------------------------------

durations = st.sampled_from(["1s", "500ms", "2.5s", "30s", "0.1s"])
header_names = st.sampled_from(["x-user", "x-b3-flags", "end-user", "x-test"])
words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
percent = st.one_of(st.integers(0, 100).map(float), st.floats(0, 100, allow_nan=False).map(lambda f: round(f, 3)))


def string_match() -> st.SearchStrategy[dict[str, str]]:
    return st.one_of(
        st.builds(lambda v: {"exact": v}, words.map(lambda w: "/" + w)),
        st.builds(lambda v: {"prefix": v}, words.map(lambda w: "/" + w)),
        st.builds(lambda v: {"regex": v}, st.sampled_from(["/api/.*", "^/v[0-9]+/.*$", ".*"])),
    )


header_match = st.one_of(
    st.builds(lambda v: {"exact": v}, words),
    st.builds(lambda v: {"prefix": v}, words),
    st.builds(lambda v: {"regex": v}, st.sampled_from(["a.*", "[0-9]+"])),
)

http_match = st.fixed_dictionaries(
    {},
    optional={
        "uri": string_match(),
        "headers": st.dictionaries(header_names, header_match, min_size=1, max_size=2),
        "method": st.sampled_from([{"exact": "GET"}, {"exact": "POST"}, {"regex": "GET|PUT"}]),
        "queryParams": st.dictionaries(st.sampled_from(["q", "page"]), header_match, min_size=1, max_size=1),
        "ignoreUriCase": st.booleans(),
        "withoutHeaders": st.dictionaries(st.sampled_from(["x-skip"]), header_match, min_size=1, max_size=1),
        "port": st.just(9080),
        "sourceLabels": st.just({"app": "productpage"}),
        "name": words,
    },
)


def destination(hosts: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"host": st.sampled_from(hosts)},
        optional={"subset": st.sampled_from(["v1", "v2"]), "port": st.just({"number": 9080})},
    )


def weighted(hosts: list[str]) -> st.SearchStrategy[list[dict[str, Any]]]:
    def build(dests: list[dict[str, Any]], cuts: list[int]) -> list[dict[str, Any]]:
        if len(dests) == 1:
            return [{"destination": dests[0]}]
        points = sorted(cuts[: len(dests) - 1])
        weights = [b - a for a, b in zip([0, *points], [*points, 100], strict=True)]
        return [{"destination": d, "weight": w} for d, w in zip(dests, weights, strict=True)]

    return st.builds(
        build,
        st.lists(destination(hosts), min_size=1, max_size=3),
        st.lists(st.integers(0, 100), min_size=2, max_size=2),
    )


headers_op = st.fixed_dictionaries(
    {},
    optional={
        "set": st.dictionaries(header_names, words, min_size=1, max_size=2),
        "add": st.dictionaries(header_names, words, min_size=1, max_size=2),
        "remove": st.lists(header_names, min_size=1, max_size=2, unique=True),
    },
)

fault_delay = st.fixed_dictionaries(
    {"fixedDelay": durations}, optional={"percentage": st.builds(lambda v: {"value": v}, percent)}
)
fault_abort = st.fixed_dictionaries(
    {"httpStatus": st.sampled_from([400, 403, 500, 503])},
    optional={"percentage": st.builds(lambda v: {"value": v}, percent)},
)

http_route = st.fixed_dictionaries(
    {"route": weighted(["reviews", "ratings"])},
    optional={
        "match": st.lists(http_match, min_size=1, max_size=2),
        "timeout": durations,
        "retries": st.fixed_dictionaries(
            {"attempts": st.integers(0, 5)},
            optional={
                "perTryTimeout": durations,
                "retryOn": st.sampled_from(["5xx", "gateway-error,connect-failure", "retriable-4xx,reset", "503"]),
                "retryRemoteLocalities": st.booleans(),
            },
        ),
        "fault": st.one_of(
            st.builds(lambda d: {"delay": d}, fault_delay),
            st.builds(lambda a: {"abort": a}, fault_abort),
            st.builds(lambda d, a: {"delay": d, "abort": a}, fault_delay, fault_abort),
        ),
        "rewrite": st.fixed_dictionaries({}, optional={"uri": words.map(lambda w: "/" + w), "authority": words}),
        "headers": st.fixed_dictionaries({}, optional={"request": headers_op, "response": headers_op}),
        "mirror": st.just({"host": "ratings"}),
        "mirrorPercentage": st.builds(lambda v: {"value": v}, percent),
        "name": words,
    },
)


def virtual_service(gateway: bool) -> st.SearchStrategy[dict[str, Any]]:
    spec: dict[str, Any] = {
        "hosts": st.just(["reviews"] if not gateway else ["*"]),
        "http": st.lists(http_route, min_size=1, max_size=3),
    }
    if gateway:
        spec["gateways"] = st.sampled_from([["gw"], ["gw", "mesh"]])
    return st.builds(
        lambda s: {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "vs-gw" if gateway else "vs", "namespace": "default"},
            "spec": s,
        },
        st.fixed_dictionaries(spec),
    )


traffic_policy = st.fixed_dictionaries(
    {},
    optional={
        "loadBalancer": st.one_of(
            st.builds(
                lambda v: {"simple": v}, st.sampled_from(["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "PASSTHROUGH"])
            ),
            st.builds(
                lambda v: {"consistentHash": v},
                st.one_of(
                    st.builds(lambda h: {"httpHeaderName": h}, header_names),
                    st.just({"useSourceIp": True}),
                    st.builds(lambda n, t: {"httpCookie": {"name": n, "ttl": t}}, words, durations),
                    st.builds(lambda q: {"httpQueryParameterName": q}, words),
                ),
            ),
        ),
        "connectionPool": st.fixed_dictionaries(
            {},
            optional={
                "tcp": st.fixed_dictionaries(
                    {}, optional={"maxConnections": st.integers(1, 1000), "connectTimeout": durations}
                ),
                "http": st.fixed_dictionaries(
                    {},
                    optional={
                        "http1MaxPendingRequests": st.integers(1, 1000),
                        "http2MaxRequests": st.integers(1, 1000),
                        "maxRequestsPerConnection": st.integers(1, 100),
                        "maxRetries": st.integers(0, 10),
                        "idleTimeout": durations,
                        "h2UpgradePolicy": st.sampled_from(["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"]),
                    },
                ),
            },
        ),
        "outlierDetection": st.fixed_dictionaries(
            {},
            optional={
                "consecutive5xxErrors": st.integers(0, 10),
                "consecutiveGatewayErrors": st.integers(0, 10),
                "interval": durations,
                "baseEjectionTime": durations,
                "maxEjectionPercent": st.integers(0, 100),
            },
        ),
        "tls": st.one_of(
            st.just({"mode": "DISABLE"}),
            st.just({"mode": "ISTIO_MUTUAL"}),
            st.builds(lambda s: {"mode": "SIMPLE", "sni": s}, words.map(lambda w: w + ".example.com")),
        ),
    },
)

destination_rule = st.builds(
    lambda policy, subsets: {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "reviews", "namespace": "default"},
        "spec": {"host": "reviews", **({"trafficPolicy": policy} if policy else {}), "subsets": subsets},
    },
    traffic_policy,
    st.lists(
        st.builds(
            lambda name, policy: {
                "name": name,
                "labels": {"version": name},
                **({"trafficPolicy": policy} if policy else {}),
            },
            st.sampled_from(["v1", "v2"]),
            traffic_policy,
        ),
        max_size=2,
        unique_by=lambda s: s["name"],
    ),
)

service_entry = st.builds(
    lambda port, resolution: {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "external", "namespace": "default"},
        "spec": {
            "hosts": ["api.example.com"],
            "location": "MESH_EXTERNAL",
            "ports": [port],
            "resolution": resolution,
            **({"endpoints": [{"address": "127.30.1.1"}]} if resolution == "STATIC" else {}),
        },
    },
    st.sampled_from(
        [
            {"number": 80, "name": "http", "protocol": "HTTP"},
            {"number": 443, "name": "https", "protocol": "HTTPS"},
            {"number": 5432, "name": "tcp", "protocol": "TCP"},
        ]
    ),
    st.sampled_from(["DNS", "STATIC", "NONE"]),
)

sidecar = st.builds(
    lambda hosts, mode: {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": "default", "namespace": "default"},
        "spec": {"egress": [{"hosts": hosts}], "outboundTrafficPolicy": {"mode": mode}},
    },
    st.sampled_from([["./*"], ["./reviews.default.svc.cluster.local"], ["*/*"], ["./*", "istio-system/*"]]),
    st.sampled_from(["ALLOW_ANY", "REGISTRY_ONLY"]),
)

meshes = st.fixed_dictionaries(
    {"vs": virtual_service(False)},
    optional={
        "vs_gw": virtual_service(True),
        "dr": destination_rule,
        "se": service_entry,
        "sidecar": sidecar,
    },
)

# --- translate, bootstrap, validate ---------------------------------------------------------


def _translate(text: str, proxy: Proxy) -> dict[str, dict[str, Any]]:
    loaded = load_text(text, "fuzz.yaml")
    agg = Aggregator(mesh=MeshConfig())
    agg.set_source(
        "files", SourceSnapshot(tuple(loaded.configs), tuple(loaded.services), tuple(loaded.endpoint_slices))
    )
    state = agg.build()
    tr = Translator()
    return {
        t: {name: b.message() for name, b in tr.generate(state, proxy, t).index.items()}
        for t in (TypeUrl.CLUSTER, TypeUrl.ENDPOINT, TypeUrl.LISTENER, TypeUrl.ROUTE)
    }


def _inline_rds(filters: Any, routes: dict[str, Any]) -> None:
    for f in filters:
        if f.name != HCM_NAME:
            continue
        m = hcm_pb2.HttpConnectionManager()
        f.typed_config.Unpack(m)
        if m.HasField("rds"):
            name = m.rds.route_config_name
            rc = route_pb2.RouteConfiguration()
            rc.CopyFrom(routes.get(name) or route_pb2.RouteConfiguration(name=name))
            # Over RDS Envoy does not check that routed clusters exist (they may
            # come later); inline it would, unless told not to.
            rc.validate_clusters.value = False
            m.ClearField("rds")
            m.route_config.CopyFrom(rc)
            f.typed_config.Pack(m)


def bootstrap(res: dict[str, dict[str, Any]], proxy: Proxy) -> dict[str, Any]:
    """A static bootstrap holding what ADS would have sent: EDS clusters become
    STATIC with their ClusterLoadAssignment, HCMs carry their route config."""
    clusters = []
    for c in res[TypeUrl.CLUSTER].values():
        c = cluster_pb2.Cluster.FromString(c.SerializeToString())
        if c.HasField("eds_cluster_config"):
            cla = res[TypeUrl.ENDPOINT].get(c.name)
            c.ClearField("eds_cluster_config")
            c.type = cluster_pb2.Cluster.STATIC
            c.load_assignment.cluster_name = c.name
            if cla is not None:
                c.load_assignment.CopyFrom(cla)
        clusters.append(json_format.MessageToDict(c))
    listeners = []
    for lst in res[TypeUrl.LISTENER].values():
        lst = lst.__class__.FromString(lst.SerializeToString())
        for fc in lst.filter_chains:
            _inline_rds(fc.filters, res[TypeUrl.ROUTE])
        if lst.HasField("default_filter_chain"):
            _inline_rds(lst.default_filter_chain.filters, res[TypeUrl.ROUTE])
        listeners.append(json_format.MessageToDict(lst))
    return {
        "node": {"id": proxy.node_id, "cluster": "fuzz"},
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }


def envoy_validate(config: dict[str, Any]) -> tuple[bool, str]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(config, f)
        path = f.name
    try:
        run = subprocess.run(
            [envoy_binary(), "--mode", "validate", "-c", path, "--use-dynamic-base-id", "-l", "error"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        Path(path).unlink()
    return run.returncode == 0, (run.stdout[-3000:] + run.stderr[-3000:]).strip()


RUNS: dict[str, int] = {"examples": 0, "validated": 0}
# How many validated configs carried each feature (JSON names): what the run covered.
SEEN: dict[str, int] = dict.fromkeys(
    (
        "weightedClusters",
        "retryPolicy",
        "envoy.filters.http.fault",
        "prefixRewrite",
        "requestMirrorPolicies",
        "hashPolicy",
        "outlierDetection",
        "circuitBreakers",
        "UpstreamTlsContext",
        "safeRegex",
        "api.example.com",
    ),
    0,
)
# Envoy takes ~0.3 s a check, two checks an example.
_EXAMPLES = {"ci": 25, "long": 300}.get(os.environ.get("HYPOTHESIS_PROFILE", "ci"), 25)


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print(f"\nnever-NACK: {RUNS['examples']} meshes, {RUNS['validated']} Envoy validations; configs with: {SEEN}")


@settings(max_examples=_EXAMPLES)
@given(mesh=meshes)
def test_envoy_accepts_what_valid_istio_config_becomes(mesh: dict[str, dict[str, Any]]) -> None:
    text = MESH + "".join("---\n" + yaml.safe_dump(doc, sort_keys=False) for doc in mesh.values())
    loaded = load_text(text, "fuzz.yaml")
    assume(not loaded.errors)  # only what a user can apply
    RUNS["examples"] += 1
    for proxy in (SIDECAR, CAPTURED, GATEWAY):
        config = bootstrap(_translate(text, proxy), proxy)
        dumped = json.dumps(config)
        for feature in SEEN:
            SEEN[feature] += feature in dumped
        ok, out = envoy_validate(config)
        RUNS["validated"] += 1
        assert ok, f"Envoy rejected the config for {proxy.id}:\n{out}\n--- input ---\n{text}"
