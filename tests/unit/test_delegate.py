"""VirtualService delegation as istiod merges it: a root VirtualService's
`http[].delegate` replaced by the delegate's routes under the root's match.
Asserts on the Envoy routes a sidecar (and a gateway) gets, on the pure merge
functions, on validation and on the analysis warnings."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from istio.networking.v1alpha3 import virtual_service_pb2 as vs_pb

from istiod_py.config.analysis import analyze
from istiod_py.config.loader import load_text
from istiod_py.config.model import ConfigError
from istiod_py.model import MeshState, Proxy, parse_proxy
from istiod_py.translate.generate import Translator
from istiod_py.translate.route import delegate
from istiod_py.xds.types import TypeUrl
from tests.support.states import load_docs, mesh_state

BASE = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: other}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""

V1 = "outbound|9080|v1|reviews.default.svc.cluster.local"
V2 = "outbound|9080|v2|reviews.default.svc.cluster.local"
VHOST = "reviews.default.svc.cluster.local:9080"


def vs(name: str, http: str, *, ns: str = "default", hosts: str = "[reviews]", extra: str = "") -> str:
    hosts_line = f"  hosts: {hosts}\n" if hosts else ""
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {ns}}}
spec:
{hosts_line}{extra}  http:
{http}"""


def delegate_vs(name: str, http: str, *, ns: str = "default", extra: str = "") -> str:
    return vs(name, http, ns=ns, hosts="", extra=extra)


def load(*docs: str) -> Any:
    return load_docs(BASE, *docs)


def state_of(*docs: str) -> MeshState:
    return mesh_state(BASE, *docs)


def client() -> Proxy:
    return parse_proxy(
        "sidecar~127.9.1.1~client.default~default.svc.cluster.local",
        {"NAMESPACE": "default", "LABELS": {"app": "client"}, "INTERCEPTION_MODE": "NONE"},
    )


def route_config(state: MeshState, translator: Translator | None = None) -> route_pb2.RouteConfiguration:
    built = (translator or Translator()).generate(state, client(), TypeUrl.ROUTE).get("9080")
    assert built is not None
    msg = route_pb2.RouteConfiguration()
    msg.ParseFromString(built.body)
    return msg


def routes_of(*docs: str) -> list[rc.Route]:
    for vh in route_config(state_of(*docs)).virtual_hosts:
        if vh.name == VHOST:
            return list(vh.routes)
    raise AssertionError(f"no virtual host {VHOST}")


def summary(r: rc.Route) -> tuple[str, str, list[tuple[str, str]], str]:
    kind = r.match.WhichOneof("path_specifier") or ""
    path = str(getattr(r.match, kind)) if kind and kind != "safe_regex" else r.match.safe_regex.regex
    headers = [(h.name, h.string_match.exact or h.string_match.prefix) for h in r.match.headers]
    target = r.route.cluster if r.HasField("route") else f"direct:{r.direct_response.status}"
    return f"{kind}:{path}", target, headers, r.name


def warnings_of(*docs: str) -> list[ConfigError]:
    res = load(*docs)
    found = analyze(res.configs, state_of(*docs).services)
    return [w for w in found if "Delegate" in w.message or "virtualservice" in w.message]


ROOT = vs(
    "reviews",
    """  - name: v2
    match: [{uri: {prefix: /v2}}]
    delegate: {name: reviews-v2}
  - name: rest
    delegate: {name: reviews-rest}
""",
)
DELEGATE_V2 = delegate_vs(
    "reviews-v2",
    """  - name: jason
    match: [{uri: {prefix: /v2/reviews}, headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{uri: {prefix: /elsewhere}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
""",
)
DELEGATE_REST = delegate_vs("reviews-rest", "  - route: [{destination: {host: reviews, subset: v1}}]\n")


# --- sidecar routes ---------------------------------------------------------------------------


def test_delegate_routes_are_merged_under_the_root_match_in_order() -> None:
    got = [summary(r) for r in routes_of(ROOT, DELEGATE_V2, DELEGATE_REST)]
    assert got == [
        # uri narrowed by the delegate, header added; names joined root-delegate
        ("prefix:/v2/reviews", V2, [("end-user", "jason")], "v2-jason"),
        # /elsewhere is not under /v2: dropped. No match on the delegate route: the root's.
        ("prefix:/v2", V1, [], "v2"),
        # the root route had no match: the delegate's (none) as is
        ("prefix:/", V1, [], "rest"),
    ]


def test_editing_only_the_delegate_changes_the_routes_of_the_root_host() -> None:
    translator = Translator()
    before = route_config(state_of(ROOT, DELEGATE_V2, DELEGATE_REST), translator)
    swapped = DELEGATE_REST.replace("subset: v1", "subset: v2")
    after = route_config(state_of(ROOT, DELEGATE_V2, swapped), translator)
    last = next(vh for vh in before.virtual_hosts if vh.name == VHOST).routes[-1]
    assert last.route.cluster == V1
    last = next(vh for vh in after.virtual_hosts if vh.name == VHOST).routes[-1]
    assert last.route.cluster == V2


def test_headers_and_query_params_merge_and_the_root_conditions_stay() -> None:
    root = vs(
        "reviews",
        """  - match: [{uri: {prefix: /api}, headers: {x-env: {exact: prod}}, queryParams: {v: {exact: "1"}}}]
    delegate: {name: d}
""",
    )
    d = delegate_vs(
        "d",
        """  - match: [{uri: {exact: /api/x}, headers: {end-user: {prefix: ja}}, method: {exact: GET}}]
    route: [{destination: {host: reviews, subset: v2}}]
""",
    )
    (r,) = routes_of(root, d)
    assert r.match.path == "/api/x"
    assert sorted((h.name, h.string_match.exact or h.string_match.prefix) for h in r.match.headers) == [
        (":method", "GET"),
        ("end-user", "ja"),
        ("x-env", "prod"),
    ]
    assert [(q.name, q.string_match.exact) for q in r.match.query_parameters] == [("v", "1")]


def test_conflicting_conditions_drop_only_that_delegate_route() -> None:
    root = vs(
        "reviews",
        """  - match: [{uri: {prefix: /api}, headers: {x-env: {exact: prod}}}]
    delegate: {name: d}
""",
    )
    d = delegate_vs(
        "d",
        """  - match: [{headers: {x-env: {exact: staging}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{uri: {prefix: /ap}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{uri: {regex: "/api/[0-9]+"}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{headers: {x-env: {exact: prod}}, uri: {prefix: /api/ok}}]
    route: [{destination: {host: reviews, subset: v1}}]
""",
    )
    assert [summary(r) for r in routes_of(root, d)] == [("prefix:/api/ok", V1, [("x-env", "prod")], "")]
    got = warnings_of(root, d)
    assert [(w.name, w.field) for w in got] == [
        ("d", "spec.http[0].match"),
        ("d", "spec.http[1].match"),
        ("d", "spec.http[2].match"),
    ]
    assert all(delegate.DELEGATE_NOT_APPLIED in w.message and "default/reviews" in w.message for w in got)


def test_root_without_match_uses_the_delegate_matches_as_they_are() -> None:
    root = vs("reviews", "  - delegate: {name: d}\n")
    d = delegate_vs(
        "d",
        """  - match: [{uri: {regex: "/r/[0-9]+"}}, {uri: {exact: /x}}]
    route: [{destination: {host: reviews, subset: v2}}]
""",
    )
    assert [summary(r)[:2] for r in routes_of(root, d)] == [("safe_regex:/r/[0-9]+", V2), ("path:/x", V2)]


def test_each_delegate_match_merges_with_every_root_match_it_fits() -> None:
    root = vs(
        "reviews",
        """  - match: [{uri: {prefix: /a}}, {uri: {prefix: /b}}, {uri: {prefix: /ab}}]
    delegate: {name: d}
""",
    )
    d = delegate_vs(
        "d",
        """  - match: [{uri: {prefix: /abc}}, {headers: {h: {exact: "1"}}}]
    route: [{destination: {host: reviews, subset: v2}}]
""",
    )
    got = [(summary(r)[0], summary(r)[2]) for r in routes_of(root, d)]
    assert got == [
        ("prefix:/abc", []),  # under /a
        ("prefix:/abc", []),  # under /ab
        ("prefix:/a", [("h", "1")]),
        ("prefix:/b", [("h", "1")]),
        ("prefix:/ab", [("h", "1")]),
    ]


def test_root_fields_fill_in_what_the_delegate_route_leaves_unset() -> None:
    root = vs(
        "reviews",
        """  - match: [{uri: {prefix: /api}}]
    timeout: 3s
    retries: {attempts: 5}
    headers: {request: {set: {x-from: root}}}
    delegate: {name: d}
""",
    )
    d = delegate_vs(
        "d",
        """  - match: [{uri: {prefix: /api/own}}]
    timeout: 1s
    headers: {request: {set: {x-from: delegate}}}
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
""",
    )
    own, inherited = routes_of(root, d)
    assert own.route.timeout.seconds == 1 and inherited.route.timeout.seconds == 3
    assert own.route.retry_policy.num_retries.value == 5 == inherited.route.retry_policy.num_retries.value
    assert [h.header.value for h in own.request_headers_to_add] == ["delegate"]
    assert [h.header.value for h in inherited.request_headers_to_add] == ["root"]


def test_delegate_in_another_namespace_resolves_its_short_names_there() -> None:
    root = vs(
        "reviews",
        """  - match: [{uri: {prefix: /ratings}}]
    delegate: {name: d, namespace: other}
  - route: [{destination: {host: reviews, subset: v1}}]
""",
    )
    d = delegate_vs("d", "  - route: [{destination: {host: ratings}}]\n", ns="other")
    assert [summary(r)[:2] for r in routes_of(root, d)] == [
        ("prefix:/ratings", "outbound|9080||ratings.other.svc.cluster.local"),
        ("prefix:/", V1),
    ]


MISSING = 'IST0101 ReferencedResourceNotFound: Referenced virtualservice not found: "default/d"'
PRIVATE = delegate_vs("d", "  - route: [{destination: {host: reviews}}]\n", ns="other", extra="  exportTo: [.]\n")
NOT_A_DELEGATE = vs("d", "  - route: [{destination: {host: reviews}}]\n", hosts="[ratings.other]")


@pytest.mark.parametrize(
    ("docs", "ns", "message"),
    [
        ((), "default", MISSING),
        ((PRIVATE,), "other", "not exported to namespace default"),
        ((NOT_A_DELEGATE,), "default", "has hosts, so it is not a delegate"),
    ],
    ids=["missing", "not-exported", "has-hosts"],
)
def test_an_unusable_delegate_drops_the_route_and_warns(docs: tuple[str, ...], ns: str, message: str) -> None:
    root = vs(
        "reviews",
        f"""  - match: [{{uri: {{prefix: /v2}}}}]
    delegate: {{name: d, namespace: {ns}}}
""",
    )
    # No route left: Envoy answers 404, as with istiod.
    assert routes_of(root, *docs) == []
    (w,) = warnings_of(root, *docs)
    assert (w.kind, w.namespace, w.name, w.field) == ("VirtualService", "default", "reviews", "spec.http[0].delegate")
    assert message in w.message


def test_delegate_exported_to_the_root_namespace_is_used() -> None:
    root = vs("reviews", "  - delegate: {name: d, namespace: other}\n")
    d = delegate_vs(
        "d", "  - route: [{destination: {host: reviews.default.svc.cluster.local}}]\n", ns="other",
        extra="  exportTo: [default]\n",
    )  # fmt: skip
    assert [summary(r)[1] for r in routes_of(root, d)] == ["outbound|9080||reviews.default.svc.cluster.local"]
    assert warnings_of(root, d) == []


def test_a_delegate_alone_routes_nothing() -> None:
    # Without a root, the hostless VirtualService is not bound to any host: default route.
    (r,) = routes_of(DELEGATE_REST)
    assert (r.name, r.route.cluster) == ("default", "outbound|9080||reviews.default.svc.cluster.local")


# --- gateway ----------------------------------------------------------------------------------


GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
"""


def test_root_bound_to_a_gateway_gets_the_delegate_routes() -> None:
    root = vs(
        "edge",
        """  - match: [{uri: {prefix: /reviews}}]
    delegate: {name: d}
""",
        hosts="[bookinfo.example]",
        extra="  gateways: [gw]\n",
    )
    d = delegate_vs("d", "  - route: [{destination: {host: reviews, subset: v2}}]\n")
    proxy = parse_proxy(
        "router~127.9.0.1~gw-1.istio-system~istio-system.svc.cluster.local",
        {"NAMESPACE": "istio-system", "LABELS": {"istio": "ingressgateway"}, "INTERCEPTION_MODE": "NONE"},
    )
    res = Translator().generate(state_of(GATEWAY, root, d), proxy, TypeUrl.ROUTE)
    cfg: Any = res.index["http.8080"].message()
    (vh,) = cfg.virtual_hosts
    assert vh.name == "bookinfo.example:8080"
    assert [(r.match.prefix, r.route.cluster) for r in vh.routes] == [("/reviews", V2)]


# --- the pure merge ---------------------------------------------------------------------------


def sm(**kw: str) -> vs_pb.StringMatch:
    return vs_pb.StringMatch(**kw)


@pytest.mark.parametrize(
    ("root", "leaf", "conflict"),
    [
        (None, sm(prefix="/x"), False),
        (sm(prefix="/a"), None, False),
        (sm(prefix="/a"), sm(prefix="/a/b"), False),
        (sm(prefix="/a/b"), sm(prefix="/a"), True),
        (sm(prefix="/a"), sm(exact="/a/x"), False),
        (sm(prefix="/a"), sm(exact="/b"), True),
        (sm(exact="/a"), sm(exact="/a"), False),
        (sm(exact="/a"), sm(exact="/b"), True),
        (sm(exact="/a"), sm(prefix="/a"), True),
        (sm(regex="/a.*"), sm(prefix="/a"), True),
        (sm(prefix="/a"), sm(regex="/a.*"), True),
        (sm(regex="/a.*"), sm(regex="/a.*"), True),
        (sm(), sm(exact="x"), True),  # a presence match cannot be narrowed
    ],
)
def test_string_match_subset_rule(root: Any, leaf: Any, conflict: bool) -> None:
    assert delegate.string_match_conflict(root, leaf) is conflict


def test_match_rules_beyond_strings() -> None:
    def m(**kw: Any) -> vs_pb.HTTPMatchRequest:
        return vs_pb.HTTPMatchRequest(**kw)

    assert delegate.has_conflict(m(ignore_uri_case=True), m())
    assert delegate.has_conflict(m(port=80), m(port=81))
    assert not delegate.has_conflict(m(port=80), m())
    assert delegate.has_conflict(m(source_namespace="a"), m())
    assert delegate.has_conflict(m(source_labels={"app": "a"}), m(source_labels={"app": "b"}))
    assert not delegate.has_conflict(m(source_labels={"app": "a"}), m(source_labels={"v": "1"}))
    assert delegate.has_conflict(m(gateways=["ns/a"]), m(gateways=["ns/a", "ns/b"]))
    assert not delegate.has_conflict(m(gateways=["ns/a", "ns/b"]), m(gateways=["ns/b"]))
    merged = delegate.merge_match(
        m(name="r", port=80, source_labels={"app": "a"}, gateways=["mesh"]), m(name="d", source_labels={"v": "1"})
    )
    assert (merged.name, merged.port, dict(merged.source_labels), list(merged.gateways)) == (
        "r-d",
        80,
        {"app": "a", "v": "1"},
        ["mesh"],
    )


# --- validation -------------------------------------------------------------------------------


def _errors(text: str) -> list[tuple[str, str]]:
    return [(e.field, e.message) for e in load_text(text, "v.yaml").errors]


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        (
            delegate_vs("d", "  - route: [{destination: {host: r}}]\n", extra="  gateways: [gw]\n"),
            "spec.hosts",
            "a delegate must have no gateways, tls or tcp routes (found gateways)",
        ),
        (
            delegate_vs("d", "  - delegate: {name: e}\n"),
            "spec.http[0].delegate",
            "cannot delegate again: only one level of delegation",
        ),
        (
            vs("r", "  - delegate: {name: d}\n    route: [{destination: {host: r}}]\n"),
            "spec.http[0].route",
            "must not have route",
        ),
        (
            vs("r", "  - delegate: {name: d}\n    redirect: {uri: /x}\n"),
            "spec.http[0].redirect",
            "must not have redirect",
        ),
        (vs("r", "  - delegate: {namespace: ns}\n"), "spec.http[0].delegate.name", "name is required"),
        (delegate_vs("d", "  - match: [{uri: {prefix: /}}]\n"), "spec.http[0]", "needs one of route, redirect or"),
    ],
)
def test_validation_follows_istio_delegate_rules(text: str, field: str, message: str) -> None:
    (err,) = _errors(text)
    assert err[0] == field and message in err[1], err


def test_valid_root_and_delegate_load_without_errors() -> None:
    assert _errors("\n---\n".join((ROOT, DELEGATE_V2, DELEGATE_REST))) == []
    # A root route keeps its other fields; a directResponse is allowed (inherited, as in istiod).
    assert _errors(vs("r", "  - delegate: {name: d}\n    timeout: 1s\n    directResponse: {status: 503}\n")) == []
