"""Patching the control plane's root certificate into its webhook
configurations (`clientConfig.caBundle` of every webhook), as Istio's webhook
controller does: `install` renders them with an empty caBundle because the CA
is created when istiod first starts. Run by the control plane with
`--kubeconfig` once its CA is up (and again whenever the root changes); a
configuration that is not there yet is skipped (the next run patches it)."""

from __future__ import annotations

import base64
import logging
from typing import Any

log = logging.getLogger("istiod_py.inject.cabundle")


def patch_ca_bundle(api_client: Any, root_pem: str, mutating: str, validating: str, attempts: int = 5) -> list[str]:
    """Sets caBundle on every webhook of the two configurations (by name);
    returns the names it changed. `api_client` is a kubernetes.client.ApiClient."""
    from kubernetes import client as kclient
    from kubernetes.client.exceptions import ApiException

    api = kclient.AdmissionregistrationV1Api(api_client)
    bundle = base64.b64encode(root_pem.encode()).decode()
    changed = []
    ops = (
        (mutating, api.read_mutating_webhook_configuration, api.replace_mutating_webhook_configuration),
        (validating, api.read_validating_webhook_configuration, api.replace_validating_webhook_configuration),
    )
    for name, read, write in ops:
        if not name:
            continue
        for _ in range(attempts):  # another writer may move the resourceVersion between read and write
            try:
                cfg = read(name)
            except ApiException as e:
                if e.status == 404:
                    break
                raise
            hooks = cfg.webhooks or []
            if all(h.client_config.ca_bundle == bundle for h in hooks):
                break
            for h in hooks:
                h.client_config.ca_bundle = bundle
            try:
                write(name, cfg)
            except ApiException as e:
                if e.status == 409:
                    continue
                raise
            changed.append(name)
            log.info("caBundle of %s set to the mesh root", name)
            break
    return changed
