"""The one-host node refreshes configMap and secret volumes when the object changes,
as the kubelet does within its sync period (istiod_py/node/volumes.py): changed keys
are rewritten in place, removed keys disappear, a projected configMap source follows
too, and a deleted object leaves the last content. Real API server and scheduler."""

from __future__ import annotations

import base64
from pathlib import Path

from istiod_py.kube.client import JsonObj
from istiod_py.node.netns import pod_key
from tests.kube.test_node import APP, NodeProc, node, nwait, ready_pods  # noqa: F401 - `node` is a fixture
from tests.support.kube import KubeCluster


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def _objects(ns: str, msg: str, secret: str) -> list[JsonObj]:
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "greeting", "namespace": ns},
         "data": {"msg": msg, "extra": "x"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": ns},
         "data": {"password": _b64(secret)}},
    ]  # fmt: skip


def _pod(ns: str, node_name: str) -> JsonObj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "reader", "namespace": ns, "labels": {"app": "reader"}},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node_name},
            "containers": [{"name": "app", "image": APP, "ports": [{"containerPort": 8080}]}],
            "volumes": [
                {"name": "cm", "configMap": {"name": "greeting"}},
                {"name": "sec", "secret": {"secretName": "creds"}},
                {"name": "proj", "projected": {"sources": [
                    {"configMap": {"name": "greeting", "items": [{"key": "msg", "path": "sub/m.txt"}]}}]}},
            ],
        },
    }  # fmt: skip


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def test_configmap_and_secret_volumes_follow_their_objects(kube: KubeCluster, node: NodeProc) -> None:  # noqa: F811
    ns = kube.namespace("vol")
    kube.apply(*_objects(ns, "hello", "s3cret"))
    kube.apply(_pod(ns, node.name))
    (pod,) = nwait(node, lambda: ready_pods(kube, ns, "app=reader", 1), 60, "reader Pod Ready")
    vols = node.log.parent / "run" / node.name / "pods" / pod_key(str(pod["metadata"]["uid"])) / "v"
    cm, sec, proj = vols / "cm", vols / "sec", vols / "proj"
    assert (_read(cm / "msg"), _read(cm / "extra"), _read(sec / "password"), _read(proj / "sub" / "m.txt")) == (
        "hello", "x", "s3cret", "hello")  # fmt: skip

    # Changed: the files follow within the node's refresh period (seconds).
    cmap, secret = _objects(ns, "bye", "rotated")
    cmap["data"].pop("extra")
    kube.apply(cmap, secret)
    nwait(node, lambda: _read(cm / "msg") == "bye" and _read(proj / "sub" / "m.txt") == "bye", 20, "configMap refresh")
    nwait(node, lambda: _read(sec / "password") == "rotated", 20, "secret refresh")
    nwait(node, lambda: not (cm / "extra").exists(), 20, "a removed key's file gone")

    # Deleted: the last content stays (the kubelet keeps it), the pod keeps running.
    kube.delete(cmap)
    kube.apply(_objects(ns, "bye", "again")[1])
    nwait(node, lambda: _read(sec / "password") == "again", 20, "secret refresh after the configMap went")
    assert _read(cm / "msg") == "bye"
    assert ready_pods(kube, ns, "app=reader", 1)
    kube.client.delete(f"/api/v1/namespaces/{ns}")
