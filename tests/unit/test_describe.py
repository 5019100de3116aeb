"""`istiod-py describe` offline (-f): the DestinationRule subset, VirtualService and
the routes the translator produced for them, the effective mTLS mode (mesh STRICT,
a workload's port-level PERMISSIVE) and the AuthorizationPolicies selected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from istiod_py.cli.app import main

MESH = str(Path(__file__).parent / "describe_fixture" / "mesh.yaml")


def describe(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    rc = main(["describe", *args, "-f", MESH])
    return rc, capsys.readouterr().out


def test_describe_workload(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = describe(capsys, "pod", "reviews-v2.default", "-o", "json")
    assert rc == 0
    r = json.loads(out)
    assert r["workload"]["labels"] == {"app": "reviews", "version": "v2"}
    [svc] = r["services"]
    assert svc["service"] == "reviews.default.svc.cluster.local"
    assert svc["destinationRule"]["name"] == "default/reviews"
    assert svc["destinationRule"]["matchingSubsets"] == ["v2"] and svc["destinationRule"]["tlsMode"] == "ISTIO_MUTUAL"
    assert svc["virtualService"] == "default/reviews"
    routes = [(x["name"], x["destination"], x["virtualService"]) for x in svc["routes"]]
    assert routes == [
        ("jason", ["outbound|9080|v2|reviews.default.svc.cluster.local"], "default/reviews"),
        (
            "",
            ["outbound|9080|v1|reviews.default.svc.cluster.local (90%)",
             "outbound|9080|v2|reviews.default.svc.cluster.local (10%)"],
            "default/reviews",
        ),
    ]  # fmt: skip
    assert svc["routes"][0]["match"]["headers"][0]["name"] == "end-user"
    pa = r["peerAuthentication"]
    assert pa["mode"] == "STRICT" and pa["ports"] == {"9080": "PERMISSIVE"}
    assert pa["applied"] == ["default/reviews-v2-port", "istio-system/default"]  # most specific first
    assert r["authorizationPolicies"] == [
        {"name": "default/deny-v2-delete", "action": "DENY"},
        {"name": "default/reviews-viewer", "action": "ALLOW"},
    ]
    rc, text = describe(capsys, "workload", "reviews-v2")
    assert (
        "Matching subsets: v2" in text
        and "Effective PeerAuthentication: workload mTLS mode STRICT, port 9080: PERMISSIVE" in text
    )


def test_describe_service(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = describe(capsys, "service", "reviews", "-o", "json")
    assert rc == 0
    r = json.loads(out)
    assert r["service"] == "reviews.default.svc.cluster.local" and r["virtualService"] == "default/reviews"
    assert [w["name"] for w in r["workloads"]] == ["reviews-v1", "reviews-v2"]
    modes = {w["name"]: w["peerAuthentication"]["ports"]["9080"] for w in r["workloads"]}
    assert modes == {"reviews-v1": "STRICT", "reviews-v2": "PERMISSIVE"}
    authz = {w["name"]: [a["name"] for a in w["authorizationPolicies"]] for w in r["workloads"]}
    assert authz == {
        "reviews-v1": ["default/reviews-viewer"],
        "reviews-v2": ["default/deny-v2-delete", "default/reviews-viewer"],
    }
    assert len(r["routes"]) == 2


def test_describe_unknown_is_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["describe", "pod", "nope", "-f", MESH])
    err = capsys.readouterr().err
    assert rc == 1 and "no workload default/nope" in err and "reviews-v1" in err
