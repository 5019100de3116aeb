"""Create-or-update and delete of manifests through the API server (what
`kubectl apply -f` / `delete -f` do for plain objects), for CRD installation,
`install`, and tests. Resource paths come from the kind: the core kinds the mesh
uses are listed, every other kind uses Kubernetes' plural rule."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from .client import JsonObj, KubeApiError, KubeClient, resource_path
from .convert import plural

CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "Node",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "PersistentVolume",
        "StorageClass",
        "PriorityClass",
    }
)


def path_of(obj: Mapping[str, Any], with_name: bool = True) -> str:
    api_version = str(obj.get("apiVersion") or "")
    kind = str(obj.get("kind") or "")
    if not api_version or not kind:
        raise ValueError("a manifest needs apiVersion and kind")
    group, _, version = api_version.rpartition("/")
    meta = obj.get("metadata") or {}
    ns = None if kind in CLUSTER_SCOPED else str(meta.get("namespace") or "default")
    name = str(meta.get("name") or "") if with_name else None
    return resource_path(group, version, plural(kind), ns, name or None)


def apply(client: KubeClient, obj: Mapping[str, Any]) -> JsonObj:
    """Creates the object, or replaces it (keeping its resourceVersion) if it exists."""
    try:
        return client.create(path_of(obj, with_name=False), obj)
    except KubeApiError as e:
        if e.status != 409:
            raise
    for _ in range(5):  # a concurrent writer may move the version between GET and PUT
        current = client.get(path_of(obj))
        body = dict(obj)
        meta = dict(body.get("metadata") or {})
        meta["resourceVersion"] = (current.get("metadata") or {}).get("resourceVersion")
        body["metadata"] = meta
        if "status" in current and "status" not in body:
            body["status"] = current["status"]
        try:
            return client.replace(path_of(obj), body)
        except KubeApiError as e:
            if e.status != 409:
                raise
    raise KubeApiError(409, f"{obj.get('kind')} {path_of(obj)}: kept conflicting with another writer")


def delete(client: KubeClient, obj: Mapping[str, Any], missing_ok: bool = True) -> None:
    try:
        client.delete(path_of(obj))
    except KubeApiError as e:
        if not (missing_ok and e.status == 404):
            raise


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]


def apply_all(client: KubeClient, objs: Iterable[Mapping[str, Any]]) -> list[JsonObj]:
    return [apply(client, o) for o in objs]


def wait_crds_established(client: KubeClient, names: Iterable[str], timeout: float = 30.0) -> None:
    """Custom resources of a new CRD are refused until it is Established."""
    deadline = time.monotonic() + timeout
    for name in names:
        path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
        while True:
            conds = (client.get(path).get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Established" and c.get("status") == "True" for c in conds):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not Established within {timeout}s")
            time.sleep(0.1)
