"""The /inject admission webhook: AdmissionReview v1 in, JSONPatch out (applied
here with the independent `jsonpatch` library, as the API server would), the
same pod as `kube-inject` gives for the same workload, and never a refused pod."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import jsonpatch
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from istiod_py.inject import webhook
from istiod_py.inject.kube_inject import kube_inject
from istiod_py.inject.values import InjectionValues

VALUES = InjectionValues()

WORKLOADS = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v1, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews, version: v1}}
  template:
    metadata:
      labels: {app: reviews, version: v1}
      annotations: {traffic.sidecar.istio.io/excludeOutboundPorts: "5432"}
    spec:
      serviceAccountName: bookinfo-reviews
      initContainers: [{name: wait, image: busybox}]
      containers:
      - name: reviews
        image: reviews:v1
        ports: [{containerPort: 9080, name: http}]
        readinessProbe: {httpGet: {path: /health, port: http}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: bookinfo}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}, annotations: {sidecar.istio.io/interceptionMode: TPROXY}}
    spec: {containers: [{name: db, image: db, ports: [{containerPort: 5432}]}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: agent, image: agent}]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: backup, namespace: bookinfo}
spec:
  schedule: "@daily"
  jobTemplate:
    spec:
      template:
        metadata: {labels: {app: backup}}
        spec: {restartPolicy: Never, containers: [{name: backup, image: backup}]}
"""

DOCS: list[dict[str, Any]] = list(yaml.safe_load_all(WORKLOADS))

# How the controllers name and label the pods of each workload above.
CONTROLLER_POD = {
    "Deployment": lambda name: ({"pod-template-hash": "7f9c8d"},
                                {"kind": "ReplicaSet", "name": f"{name}-7f9c8d", "apiVersion": "apps/v1"}),
    "StatefulSet": lambda name: ({"controller-revision-hash": f"{name}-55d"},
                                 {"kind": "StatefulSet", "name": name, "apiVersion": "apps/v1"}),
    "DaemonSet": lambda name: ({"controller-revision-hash": "66b"},
                               {"kind": "DaemonSet", "name": name, "apiVersion": "apps/v1"}),
    "CronJob": lambda name: ({"batch.kubernetes.io/job-name": f"{name}-29000000"},
                             {"kind": "Job", "name": f"{name}-29000000", "apiVersion": "batch/v1"}),
}  # fmt: skip


def template_of(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "CronJob":
        return dict(obj["spec"]["jobTemplate"]["spec"]["template"])
    return dict(obj["spec"]["template"])


def pod_from(obj: dict[str, Any]) -> dict[str, Any]:
    """The Pod a controller creates from the (uninjected) template."""
    tmpl = copy.deepcopy(template_of(obj))
    extra_labels, owner = CONTROLLER_POD[obj["kind"]](obj["metadata"]["name"])
    meta = dict(tmpl.get("metadata") or {})
    meta["labels"] = {**(meta.get("labels") or {}), **extra_labels}
    meta["generateName"] = owner["name"] + "-"
    meta["namespace"] = obj["metadata"]["namespace"]
    meta["ownerReferences"] = [{**owner, "controller": True, "blockOwnerDeletion": True, "uid": "u"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": tmpl["spec"]}


def review(pod: dict[str, Any], namespace: str = "bookinfo", uid: str = "abc") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "object": pod,
        },
    }


def stored(pod: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    resp = answer["response"]
    assert resp["allowed"] is True
    if "patch" not in resp:
        return pod
    assert resp["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(resp["patch"]))
    return dict(jsonpatch.apply_patch(pod, ops))


@pytest.mark.parametrize("index", range(4))
def test_webhook_stores_the_pod_kube_inject_gives(index: int) -> None:
    original = DOCS[index]
    offline = list(yaml.safe_load_all(kube_inject(WORKLOADS, VALUES)))[index]
    pod = pod_from(original)
    answer = webhook.admission_response(review(pod), VALUES)
    assert answer["response"]["uid"] == "abc"
    online = stored(copy.deepcopy(pod), answer)
    tmpl = template_of(offline)
    assert online["spec"] == tmpl["spec"]
    assert online["metadata"]["annotations"] == tmpl["metadata"]["annotations"]
    extra, _ = CONTROLLER_POD[original["kind"]](original["metadata"]["name"])
    assert online["metadata"]["labels"] == {**tmpl["metadata"]["labels"], **extra}
    # the untouched parts of the pod are kept
    assert online["metadata"]["ownerReferences"] == pod["metadata"]["ownerReferences"]
    assert any(c["name"] == "istio-proxy" for c in online["spec"]["containers"])


def test_patch_does_not_change_the_request_object() -> None:
    pod = pod_from(DOCS[0])
    before = copy.deepcopy(pod)
    webhook.admission_response(review(pod), VALUES)
    assert pod == before


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: p["metadata"]["labels"].update({"sidecar.istio.io/inject": "false"}),
        lambda p: p["metadata"].setdefault("annotations", {}).update({"sidecar.istio.io/inject": "false"}),
        lambda p: p["spec"].update({"hostNetwork": True}),
    ],
)
def test_pods_that_opt_out_are_allowed_unchanged(mutate: Any) -> None:
    pod = pod_from(DOCS[2])
    mutate(pod)
    resp = webhook.admission_response(review(pod), VALUES)["response"]
    assert resp == {"uid": "abc", "allowed": True}


def test_kube_system_pods_are_never_injected() -> None:
    pod = pod_from(DOCS[2])
    assert "patch" not in webhook.admission_response(review(pod, "kube-system"), VALUES)["response"]


def test_a_bad_annotation_allows_the_pod_with_the_reason() -> None:
    pod = pod_from(DOCS[2])
    pod["metadata"]["annotations"] = {"sidecar.istio.io/interceptionMode": "SIDEWAYS"}
    resp = webhook.admission_response(review(pod), VALUES)["response"]
    assert resp["allowed"] is True and "patch" not in resp
    assert "sidecar.istio.io/interceptionMode" in resp["status"]["message"]
    assert "bookinfo/agent-" in resp["status"]["message"]


def test_garbage_requests_are_allowed() -> None:
    bad_spec = {"spec": {"containers": "nope"}}
    for req in (
        {},
        {"request": {"uid": "x", "kind": {"kind": "Pod"}, "object": "not a pod"}},
        {"request": {"uid": "y", "kind": {"kind": "Pod"}, "object": bad_spec}},
    ):
        resp = webhook.admission_response(req, VALUES)["response"]
        assert resp["allowed"] is True and "patch" not in resp


def test_other_kinds_and_updates_pass() -> None:
    pod = pod_from(DOCS[2])
    r = review(pod)
    r["request"]["operation"] = "UPDATE"
    assert "patch" not in webhook.admission_response(r, VALUES)["response"]
    r = review(pod)
    r["request"]["kind"]["kind"] = "Service"
    assert "patch" not in webhook.admission_response(r, VALUES)["response"]


async def test_http_handler_answers_admission_reviews() -> None:
    app = web.Application()
    webhook.add_routes(app, lambda: VALUES)
    async with TestClient(TestServer(app)) as client:
        pod = pod_from(DOCS[0])
        r = await client.post("/inject", json=review(pod, uid="u-1"))
        assert r.status == 200
        body = await r.json()
        assert body["kind"] == "AdmissionReview" and body["response"]["uid"] == "u-1"
        assert "istio-proxy" in json.dumps(stored(pod, body)["spec"])
        r = await client.post("/inject", data=b"{nope")
        assert r.status == 400
