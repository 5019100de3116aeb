"""`install` / `uninstall` through the API server with the official
`kubernetes` client: server-side apply (field manager `istiod-py`, conflicts
forced, as `istioctl install` overwrites what it owns), CRDs first and waited
for until Established, then the rest in render order; uninstall deletes in
reverse order and keeps the CRDs (and with them users' Istio resources)
unless `purge`, and always the Namespace, as `istioctl uninstall` does."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

FIELD_MANAGER = "istiod-py"


class InstallError(RuntimeError):
    """An object the API server refused (the message names it)."""


def client(kubeconfig: str | None, context: str | None = None) -> Any:
    from kubernetes import client as kclient
    from kubernetes import config as kconfig
    from kubernetes.dynamic import DynamicClient

    cfg = kclient.Configuration()
    if kubeconfig == "in-cluster":
        kconfig.load_incluster_config(client_configuration=cfg)
    else:
        kconfig.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
    return DynamicClient(kclient.ApiClient(cfg))


def _ident(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {ns}{meta.get('name')}"


def _resource(dyn: Any, obj: dict[str, Any]) -> Any:
    return dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])


def _wait_established(dyn: Any, names: Iterable[str], timeout: float) -> None:
    crd_api = dyn.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            conds = (crd_api.get(name=name).to_dict().get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Established" and c.get("status") == "True" for c in conds):
                break
            if time.monotonic() > deadline:
                raise InstallError(f"CustomResourceDefinition {name}: not Established within {timeout:.0f}s")
            time.sleep(0.2)


def install(
    dyn: Any, objs: list[dict[str, Any]], log: Callable[[str], None] = lambda s: None, timeout: float = 60.0
) -> None:
    from kubernetes.client.exceptions import ApiException

    crds = [o for o in objs if o.get("kind") == "CustomResourceDefinition"]
    rest = [o for o in objs if o.get("kind") != "CustomResourceDefinition"]
    for batch in (crds, rest):
        for obj in batch:
            try:
                _resource(dyn, obj).server_side_apply(body=obj, field_manager=FIELD_MANAGER, force_conflicts=True)
            except ApiException as e:
                raise InstallError(f"{_ident(obj)}: {e.status} {e.reason}: {_message(e)}") from None
            log(f"applied {_ident(obj)}")
        if batch is crds and crds:
            _wait_established(dyn, [o["metadata"]["name"] for o in crds], timeout)
            dyn.resources.invalidate_cache() if hasattr(dyn.resources, "invalidate_cache") else None


def uninstall(
    dyn: Any, objs: list[dict[str, Any]], purge: bool = False, log: Callable[[str], None] = lambda s: None
) -> None:
    from kubernetes.client.exceptions import ApiException
    from kubernetes.dynamic.exceptions import ResourceNotFoundError

    for obj in reversed(objs):
        if obj.get("kind") == "CustomResourceDefinition" and not purge:
            continue
        if obj.get("kind") == "Namespace":
            continue  # as istioctl uninstall: the namespace may hold the user's things (kubectl delete ns)
        meta = obj.get("metadata") or {}
        try:
            _resource(dyn, obj).delete(name=meta["name"], namespace=meta.get("namespace"))
            log(f"deleted {_ident(obj)}")
        except ResourceNotFoundError:
            continue  # the kind itself is gone (its CRD deleted)
        except ApiException as e:
            if e.status != 404:
                raise InstallError(f"{_ident(obj)}: {e.status} {e.reason}: {_message(e)}") from None


def _message(e: Any) -> str:
    import json

    try:
        return str(json.loads(e.body).get("message"))
    except (TypeError, ValueError, AttributeError):
        return str(e.body or "")
