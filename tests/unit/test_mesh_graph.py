"""The mesh page's edge decision (debug/mesh_graph.decide) against Istio's
AuthorizationPolicy order: DENY first, then ALLOW (none present: allowed; present
and none matching: denied); conditions that need the request make it partial."""

from __future__ import annotations

from istiod_py.config.loader import load_text
from istiod_py.config.model import Config
from istiod_py.debug.mesh_graph import decide

PRINCIPAL = "cluster.local/ns/default/sa/client"


def policies(text: str) -> list[Config]:
    res = load_text(text, "authz.yaml")
    assert not res.errors, res.errors
    return list(res.configs)


def ap(name: str, action: str, rules: str) -> str:
    return f"""apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {name}, namespace: default}}
spec: {{action: {action}, rules: {rules}}}
---
"""


def test_no_policy_allows() -> None:
    assert decide([], PRINCIPAL, "default") == ("allow", [])


def test_deny_matching_principal_denies() -> None:
    ps = policies(ap("deny", "DENY", '[{from: [{source: {principals: ["*/sa/client"]}}]}]'))
    assert decide(ps, PRINCIPAL, "default") == ("deny", ["default/deny"])
    assert decide(ps, "cluster.local/ns/default/sa/other", "default") == ("allow", [])


def test_allow_present_but_not_matching_denies() -> None:
    ps = policies(ap("only-pp", "ALLOW", '[{from: [{source: {namespaces: ["shop"]}}]}]'))
    assert decide(ps, PRINCIPAL, "default") == ("deny", ["default/only-pp"])
    assert decide(ps, PRINCIPAL, "shop")[0] == "allow"


def test_request_conditions_make_it_partial() -> None:
    ps = policies(ap("get-only", "ALLOW", "[{to: [{operation: {methods: [GET]}}]}]"))
    assert decide(ps, PRINCIPAL, "default") == ("partial", ["default/get-only"])
    ps = policies(ap("deny-delete", "DENY", "[{to: [{operation: {methods: [DELETE]}}]}]"))
    assert decide(ps, PRINCIPAL, "default") == ("partial", ["default/deny-delete"])


def test_allow_nothing_denies_everyone() -> None:
    ps = policies(ap("allow-nothing", "ALLOW", "[]"))
    assert decide(ps, PRINCIPAL, "default")[0] == "deny"


def test_graph_edges_follow_routing_and_policy() -> None:
    """The demo's services and workloads: a VirtualService that sends reviews only to v1
    removes the edges to reviews-v2; a DENY policy on ratings turns those edges red."""
    from pathlib import Path

    from istiod_py.debug.mesh_graph import graph
    from istiod_py.registry.aggregate import Aggregator, SourceSnapshot

    demo = Path(__file__).resolve().parents[2] / "deploy" / "samples" / "demo"
    text = "\n---\n".join((demo / f).read_text() for f in ("services.yaml", "workloads.yaml", "routing.yaml"))
    text = text.replace("weight: 20", "weight: 0").replace("weight: 80", "weight: 100")
    text += "\n---\n" + ap("deny-all", "DENY", '[{from: [{source: {namespaces: ["default"]}}]}]').replace(
        "spec: {", "spec: {selector: {matchLabels: {app: ratings}}, "
    )
    res = load_text(text, "demo.yaml")
    assert not res.errors, res.errors
    agg = Aggregator()
    agg.set_source("files", SourceSnapshot(tuple(res.configs), tuple(res.services), tuple(res.endpoint_slices)))
    g = graph(agg.build(), [])
    edges = {(e["from"], e["to"]): e for e in g["edges"]}
    pp = "productpage-v1.default"
    assert (pp, "reviews-v1.default") in edges and (pp, "reviews-v2.default") not in edges
    assert edges[(pp, "reviews-v1.default")]["via"] == "default/reviews"
    assert edges[(pp, "reviews-v1.default")]["state"] == "allow"
    assert edges[(pp, "ratings-v1.default")]["state"] == "deny"
    assert edges[(pp, "ratings-v1.default")]["policies"] == ["default/deny-all"]
