"""Plug-in CA from the `cacerts` Secret in the system namespace, as istiod reads
it (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem). In a pod the Secret
is usually mounted (`--cacerts-dir`); with `--kubeconfig` and no such directory
it is read through the API at start and written to a private directory."""

from __future__ import annotations

import base64
import logging
import os
import tempfile
from pathlib import Path

from .client import KubeApiError, KubeClient

log = logging.getLogger("istiod_py.kube")

SECRET = "cacerts"
FILES = ("ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem")


def fetch_cacerts(client: KubeClient, namespace: str) -> Path | None:
    """The Secret's files in a new 0700 directory, or None when there is no such Secret."""
    try:
        secret = client.get(f"/api/v1/namespaces/{namespace}/secrets/{SECRET}")
    except KubeApiError as e:
        if e.status == 404:
            return None
        raise
    data = secret.get("data") or {}
    if "ca-key.pem" not in data:
        log.warning("Secret %s/%s has no ca-key.pem; not a plug-in CA, ignored", namespace, SECRET)
        return None
    directory = Path(tempfile.mkdtemp(prefix="istiod-py-cacerts-"))
    os.chmod(directory, 0o700)
    for name in FILES:
        if name in data:
            path = directory / name
            path.write_bytes(base64.b64decode(data[name]))
            os.chmod(path, 0o600)
    log.info("plug-in CA from Secret %s/%s", namespace, SECRET)
    return directory
