"""Rewriting the application's HTTP/TCP probes to the agent, as Istio does with
`sidecar.istio.io/rewriteAppHTTPProbers` (default true): with mTLS STRICT the
kubelet's plaintext probe would be refused by the sidecar, so each probe is
sent to the agent's status port (15020, never captured) at
`/app-health/<container>/{readyz,livez,startupz}`, and the original probe is
passed to the agent in ISTIO_KUBE_APP_PROBERS (JSON: path -> probe) for it to
run from inside the pod."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

STATUS_PORT = 15020
REWRITE = "sidecar.istio.io/rewriteAppHTTPProbers"
_KINDS = (("readinessProbe", "readyz"), ("livenessProbe", "livez"), ("startupProbe", "startupz"))


def rewrite_enabled(annotations: Mapping[str, str], default: bool) -> bool:
    if REWRITE not in annotations:
        return default
    return str(annotations[REWRITE]).strip().lower() not in ("false", "0", "no", "off")


def _resolve_port(port: Any, container: Mapping[str, Any]) -> Any:
    """A named port becomes the container's number, so the agent needs no pod spec."""
    if isinstance(port, str) and not port.isdigit():
        for p in container.get("ports") or []:
            if p.get("name") == port:
                return p.get("containerPort")
    return int(port) if isinstance(port, str) else port


def rewrite(containers: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Containers with probes pointing at the agent, and the probers map."""
    probers: dict[str, Any] = {}
    out = []
    for c in containers:
        c = copy.deepcopy(c)
        for key, suffix in _KINDS:
            probe = c.get(key)
            if not isinstance(probe, dict):
                continue
            path = f"/app-health/{c.get('name', '')}/{suffix}"
            original: dict[str, Any] = {}
            if isinstance(probe.get("httpGet"), dict):
                h = dict(probe["httpGet"])
                if _resolve_port(h.get("port"), c) == STATUS_PORT:
                    continue  # already the agent's
                h["port"] = _resolve_port(h.get("port"), c)
                h.setdefault("scheme", "HTTP")
                original["httpGet"] = h
                new_get: dict[str, Any] = {"path": path, "port": STATUS_PORT, "scheme": "HTTP"}
                if h.get("httpHeaders"):
                    new_get["httpHeaders"] = h["httpHeaders"]
            elif isinstance(probe.get("tcpSocket"), dict):
                t = dict(probe["tcpSocket"])
                t["port"] = _resolve_port(t.get("port"), c)
                original["tcpSocket"] = t
                new_get = {"path": path, "port": STATUS_PORT, "scheme": "HTTP"}
            else:
                continue  # exec and gRPC probes run as they are
            # 1 s is the API server's default: the webhook sees it, kube-inject must write it too.
            original["timeoutSeconds"] = probe.get("timeoutSeconds", 1)
            probers[path] = original
            new_probe = {k: v for k, v in probe.items() if k not in ("httpGet", "tcpSocket")}
            new_probe["httpGet"] = new_get
            c[key] = new_probe
        out.append(c)
    return out, probers
