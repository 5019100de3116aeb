"""The seeds' journey (issue 12), as one test against the real API server, scheduler,
controller-manager and the one-host node:

    istiod-py install --set profile=demo
    kubectl label namespace default istio-injection=enabled
    kubectl apply -f samples/bookinfo/platform/kube/bookinfo.yaml     (Istio's, unchanged)
    kubectl apply -f samples/bookinfo/networking/bookinfo-gateway.yaml, destination-rule-all.yaml,
        virtual-service-all-v1.yaml, then virtual-service-reviews-80-20.yaml, then
        virtual-service-reviews-test-v2.yaml                         (Istio's, unchanged)
    a PeerAuthentication STRICT in default

Every bookinfo Pod comes up injected (istio-init ran, 2/2 Ready); requests from a
client Pod without a sidecar (its namespace has no injection label) go to the ingress
gateway's ClusterIP, through the gateway's Envoy and the sidecars (captured by
iptables) with mTLS, and follow the routing: all-v1, 80/20 within binomial bounds,
`end-user: jason` -> v2. Under STRICT the client's plaintext call to productpage is
refused while the gateway's mTLS calls still pass."""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from istiod_py.ca.bundle import create_self_signed_root
from istiod_py.ca.keys import cert_to_pem
from istiod_py.kube.client import JsonObj
from tests.kube.test_node import (  # noqa: F401 - `node` is a fixture
    APP,
    NodeProc,
    deployment,
    node,
    nwait,
    pods,
    ready_pods,
)
from tests.support.kube import KubeCluster, build, wait

ROOT = Path(__file__).resolve().parents[2]
BOOKINFO = ROOT / "deploy" / "samples" / "bookinfo-platform" / "bookinfo.yaml"
ROUTING = ROOT / "deploy" / "samples" / "bookinfo"
CLIENT_NS = "journey-client"
STRICT = """apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: default
spec:
  mtls:
    mode: STRICT
"""

# Runs inside the client Pod's network namespace: N GETs, each one summarised (the
# bookinfo apps answer JSON naming themselves and nesting their upstreams' answers).
BATCH = r"""
import http.client, json, sys
host, port, path, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
headers = json.loads(sys.argv[5])
out = []
for _ in range(n):
    c = http.client.HTTPConnection(host, port, timeout=5)
    try:
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        body = r.read().decode(errors="replace")
        try:
            page = json.loads(body)
        except ValueError:
            page = None
        out.append({"status": r.status, "page": page, "body": body[:300]})
    except Exception as e:
        out.append({"status": None, "error": f"{type(e).__name__}: {e}"})
    finally:
        c.close()
print(json.dumps(out))
"""


def _stale_root_cert(ns: str) -> JsonObj:
    _, cert = create_self_signed_root(org="an earlier control plane")
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio-ca-root-cert", "namespace": ns},
            "data": {"root-cert.pem": cert_to_pem(cert)}}  # fmt: skip


def _cli(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "istiod_py.cli", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"istiod-py {' '.join(args)}: {proc.stderr[-2000:]}"


def _kubectl(kube: KubeCluster, *args: str, stdin: str | None = None, check: bool = True) -> str:
    kubectl = build() / "kubectl"  # cached by scripts/kube/build.sh: returns at once
    proc = subprocess.run([str(kubectl), "--kubeconfig", str(kube.kubeconfig), *args],
                          input=stdin, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert not check or proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr[-2000:]}"
    return proc.stdout


def _batch(nd: NodeProc, client: JsonObj, host: str, port: int, path: str, n: int,
           headers: dict[str, str] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    proc = subprocess.run(
        ["ip", "netns", "exec", nd.netns(client), sys.executable, "-c", BATCH, host, str(port), path, str(n),
         json.dumps(headers or {})],
        capture_output=True, text=True, timeout=30 + 6 * n,
    )  # fmt: skip
    assert proc.returncode == 0, f"{n} x GET http://{host}:{port}{path} from the client: {proc.stderr[-800:]}"
    result: list[dict[str, Any]] = json.loads(proc.stdout)
    return result


def _upstream(page: dict[str, Any], name: str) -> dict[str, Any]:
    return next((u for u in page.get("upstreams") or [] if u.get("upstream") == f"{name}:9080"), {})


def _reviews(r: dict[str, Any]) -> str:
    """The reviews version productpage showed, or why there is none."""
    if r.get("status") != 200 or not isinstance(r.get("page"), dict):
        return f"failed: {r.get('status')} {r.get('error') or r.get('body')}"
    page = r["page"]
    rev, det = _upstream(page, "reviews"), _upstream(page, "details")
    if page.get("name") != "productpage-v1" or det.get("status") != 200 or rev.get("status") != 200:
        return f"failed: page {page.get('name')}, details {det.get('status')}, reviews {rev.get('status')}"
    name = str(rev["response"]["name"])
    if name != "reviews-v1":  # v2/v3 call ratings; a failed call would show "ratings unavailable"
        (ratings,) = rev["response"]["upstreams"]
        if ratings.get("status") != 200 or ratings["response"]["name"] != "ratings-v1":
            return f"failed: {name} -> ratings {ratings.get('status')}"
    return name


def _all(rs: list[dict[str, Any]], version: str) -> bool:
    return all(_reviews(r) == version for r in rs)


def _inject_probe(kube: KubeCluster) -> bool:
    """A server-side dry run passes through the admission chain: True once the webhook
    (its caBundle set asynchronously by istiod) injects Pods in default."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "inject-probe", "namespace": "default"},
           "spec": {"containers": [{"name": "probe", "image": APP}]}}  # fmt: skip
    out = _kubectl(kube, "create", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(pod), check=False)
    with contextlib.suppress(ValueError):
        return any(c["name"] == "istio-proxy" for c in json.loads(out)["spec"]["containers"])
    return False


def _bookinfo_injected(kube: KubeCluster, nd: NodeProc) -> None:
    running = nwait(nd, lambda: ready_pods(kube, "default", "app", 6), 120, "the 6 bookinfo Pods Running, Ready")
    assert sorted(p["metadata"]["labels"]["app"] + "-" + p["metadata"]["labels"]["version"] for p in running) == [
        "details-v1", "productpage-v1", "ratings-v1", "reviews-v1", "reviews-v2", "reviews-v3"]  # fmt: skip
    for p in running:
        app = p["metadata"]["labels"]["app"]
        statuses = {s["name"]: s for s in p["status"]["containerStatuses"]}
        assert set(statuses) == {app, "istio-proxy"}, (p["metadata"]["name"], statuses)
        assert all(s["ready"] and "running" in s["state"] for s in statuses.values()), statuses
        (init,) = p["status"]["initContainerStatuses"]
        assert init["name"] == "istio-init" and init["state"]["terminated"]["exitCode"] == 0, init
        assert p["metadata"]["labels"]["security.istio.io/tlsMode"] == "istio"


def _cleanup(kube: KubeCluster) -> list[str]:
    """Removes everything the journey made (default itself stays), every step tried even
    after a failure; returns what could not be removed."""
    problems: list[str] = []
    steps: list[tuple[str, ...]] = [
        ("delete", "peerauthentication", "default", "-n", "default", "--ignore-not-found"),
        *(("delete", "-n", "default", "--ignore-not-found", "-f", str(ROUTING / f)) for f in (
            "virtual-service-all-v1.yaml", "virtual-service-reviews-test-v2.yaml", "destination-rule-all.yaml",
            "bookinfo-gateway.yaml")),
        ("delete", "-n", "default", "--ignore-not-found", "--wait=false", "-f", str(BOOKINFO)),
        ("label", "namespace", "default", "istio-injection-"),
        ("delete", "namespace", CLIENT_NS, "--ignore-not-found", "--wait=false"),
    ]  # fmt: skip
    for step in steps:
        try:
            _kubectl(kube, *step)
        except Exception as e:
            problems.append(str(e))
    try:
        # The Pods go before the node stops, so it tears their namespaces down itself.
        wait(lambda: not pods(kube, "default", "app") and not pods(kube, CLIENT_NS, "app"), 60, "journey Pods gone")
        _cli("uninstall", "--kubeconfig", str(kube.kubeconfig), "--set", "profile=demo")
        # istiod and the gateways too: the node then stops with no Pod of the journey left.
        wait(lambda: not pods(kube, "istio-system", "app"), 60, "istio-system Pods gone")
    except Exception as e:
        problems.append(str(e))
    return problems


@pytest.mark.timeout(420)  # the session's cluster may start inside this test's budget
def test_seeds_journey_install_label_bookinfo_route_strict(
    kube: KubeCluster,
    node: NodeProc,  # noqa: F811 - the fixture imported above
) -> None:
    t0 = time.monotonic()
    kc = str(kube.kubeconfig)
    try:
        # A root-cert ConfigMap left by an earlier control plane (another CA), as an earlier
        # test in the session may leave it: planted here so that it is always there. Pods that
        # start before this istiod rewrites it mount the stale root; the node refreshes
        # configMap volumes (as the kubelet does), and the agents' retries then succeed.
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}})
        for ns in ("istio-system", "default"):
            kube.apply(_stale_root_cert(ns))
        _cli("install", "--kubeconfig", kc, "--set", "profile=demo")
        _kubectl(kube, "label", "namespace", "default", "istio-injection=enabled")
        nwait(node, lambda: ready_pods(kube, "istio-system", "app=istiod", 1), 90, "istiod Ready")
        nwait(node, lambda: _inject_probe(kube), 60, "the injection webhook answering for default")
        _kubectl(kube, "apply", "-n", "default", "-f", str(BOOKINFO))
        # The client: a namespace without the injection label, a Pod without a sidecar.
        _kubectl(kube, "create", "namespace", CLIENT_NS)
        nwait(node, lambda: kube._exists(f"/api/v1/namespaces/{CLIENT_NS}/serviceaccounts/default"), 30, "client SA")
        kube.apply(deployment(CLIENT_NS, "client", APP, {"app": "client"}, 8080, node.name))
        _bookinfo_injected(kube, node)
        nwait(node, lambda: ready_pods(kube, "istio-system", "app=istio-ingressgateway", 1), 90, "ingress gateway")
        client = nwait(node, lambda: ready_pods(kube, CLIENT_NS, "app=client", 1), 60, "client Ready")[0]
        assert [c["name"] for c in client["spec"]["containers"]] == ["client"]
        ready_at = time.monotonic() - t0

        # No routing yet: productpage's sidecar balances over all three reviews versions.
        def plain(n: int) -> list[dict[str, Any]]:
            return _batch(node, client, "productpage.default.svc.cluster.local", 9080, "/productpage", n)

        def seen_all() -> set[str]:
            got = {_reviews(r) for r in plain(15)}
            return got if got == {"reviews-v1", "reviews-v2", "reviews-v3"} else set()

        nwait(node, seen_all, 45, "plaintext client -> productpage -> details + reviews v1/v2/v3 (PERMISSIVE)")

        gw = kube.get("/api/v1/namespaces/istio-system/services/istio-ingressgateway")["spec"]["clusterIP"]

        def ingress(n: int, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
            return _batch(node, client, gw, 80, "/productpage", n, headers)

        # Istio's routing, unchanged: all traffic to v1 through the ingress gateway.
        for f in ("bookinfo-gateway.yaml", "destination-rule-all.yaml", "virtual-service-all-v1.yaml"):
            _kubectl(kube, "apply", "-n", "default", "-f", str(ROUTING / f))
        nwait(node, lambda: _all(ingress(10), "reviews-v1"), 60, "ingress gateway -> productpage, reviews all v1")
        rs = ingress(30)
        assert Counter(map(_reviews, rs)) == {"reviews-v1": 30}, Counter(map(_reviews, rs))
        # mTLS hop by hop: each sidecar's inbound saw the caller's SPIFFE identity.
        page = rs[0]["page"]
        xfcc_gw = page["headers"].get("x-forwarded-client-cert", "")
        assert "URI=spiffe://cluster.local/ns/istio-system/sa/" in xfcc_gw, page["headers"]
        xfcc_pp = _upstream(page, "details")["response"]["headers"].get("x-forwarded-client-cert", "")
        assert "URI=spiffe://cluster.local/ns/default/sa/bookinfo-productpage" in xfcc_pp, xfcc_pp

        # 80/20: 200 requests, v2's count within 4 sigma of 40.
        _kubectl(kube, "apply", "-n", "default", "-f", str(ROUTING / "virtual-service-reviews-80-20.yaml"))
        nwait(node, lambda: "reviews-v2" in {_reviews(r) for r in ingress(20)}, 60, "80/20 reaching productpage")
        n, p = 200, 0.2
        counts = Counter(map(_reviews, ingress(n)))
        bound = 4 * math.sqrt(n * p * (1 - p))
        assert set(counts) <= {"reviews-v1", "reviews-v2"} and sum(counts.values()) == n, counts
        assert abs(counts["reviews-v2"] - n * p) <= bound, f"{counts}: v2 outside {n * p:.0f} +- {bound:.1f}"

        # end-user: jason -> v2 (productpage forwards the header to reviews); others v1.
        jason = {"end-user": "jason"}
        _kubectl(kube, "apply", "-n", "default", "-f", str(ROUTING / "virtual-service-reviews-test-v2.yaml"))
        nwait(node, lambda: _all(ingress(10, jason), "reviews-v2") and _all(ingress(10), "reviews-v1"), 60,
              "jason -> v2, others -> v1")  # fmt: skip
        assert Counter(map(_reviews, ingress(20, jason))) == {"reviews-v2": 20}
        assert Counter(map(_reviews, ingress(20))) == {"reviews-v1": 20}

        # STRICT: the sidecar-less client's plaintext call is refused; the gateway's mTLS passes.
        _kubectl(kube, "apply", "-f", "-", stdin=STRICT)
        nwait(node, lambda: all(r["status"] is None for r in plain(3)), 60, "plaintext refused under STRICT")
        refused = plain(5)
        assert all(r["status"] is None for r in refused), refused
        assert Counter(map(_reviews, ingress(10, jason))) == {"reviews-v2": 10}
        print(f"journey: bookinfo injected and Ready {ready_at:.1f}s after install; total {time.monotonic() - t0:.1f}s")
    except BaseException:
        _cleanup(kube)  # the journey's own failure is the one reported
        raise
    problems = _cleanup(kube)
    assert not problems, "cleanup failed:\n" + "\n".join(problems)
