"""What an installation decides about every injected sidecar (Istio's
`values.global.*`, `sidecarInjectorWebhook.*` and mesh config): images, the
control plane's address, identity domain, default resources and policies.
`install` renders the same values into the istiod Deployment's environment,
so the webhook and `kube-inject` inject the same pod."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any


def _default_resources() -> dict[str, dict[str, str]]:
    # Istio's values.global.proxy.resources defaults.
    return {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "2000m", "memory": "1024Mi"}}


@dataclass(frozen=True)
class InjectionValues:
    hub: str = "ghcr.io/istiod-py"
    tag: str = "latest"
    proxy_image: str = "proxy"  # the image that runs `istiod-py agent` and `istiod-py iptables`
    image_pull_policy: str = "IfNotPresent"
    istio_namespace: str = "istio-system"
    revision: str = ""  # "" is the default revision
    cluster_domain: str = "cluster.local"
    trust_domain: str = "cluster.local"
    cluster_id: str = "Kubernetes"
    mesh_id: str = "cluster.local"
    interception_mode: str = "REDIRECT"
    include_ip_ranges: str = "*"
    exclude_ip_ranges: str = ""
    exclude_inbound_ports: str = ""
    exclude_outbound_ports: str = ""
    log_level: str = "warning"
    component_log_level: str = "misc:error"
    rewrite_app_probers: bool = True
    enable_prometheus_merge: bool = True
    policy: str = "enabled"  # "disabled": only pods asking for it (sidecar.istio.io/inject=true)
    readiness_initial_delay: int = 0
    readiness_period: int = 15
    readiness_failure_threshold: int = 4
    proxy_resources: dict[str, dict[str, str]] = field(default_factory=_default_resources)

    @property
    def istiod_service(self) -> str:
        name = f"istiod-{self.revision}" if self.revision else "istiod"
        return f"{name}.{self.istio_namespace}.svc"

    @property
    def discovery_address(self) -> str:
        return f"{self.istiod_service}:15012"

    def image(self) -> str:
        return self.proxy_image if "/" in self.proxy_image else f"{self.hub}/{self.proxy_image}:{self.tag}"

    def to_env(self) -> dict[str, str]:
        """The values as environment variables (INJECT_<FIELD>; maps as JSON), how
        the istiod Deployment `install` renders carries them to the webhook."""
        out: dict[str, str] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            key = "INJECT_" + f.name.upper()
            if isinstance(v, bool):
                out[key] = str(v).lower()
            elif isinstance(v, dict):
                out[key] = json.dumps(v, sort_keys=True)
            else:
                out[key] = str(v)
        return out

    @staticmethod
    def from_env(env: Mapping[str, str] | None = None) -> InjectionValues:
        env = os.environ if env is None else env
        base = InjectionValues()
        changes: dict[str, Any] = {}
        for f in fields(base):
            key = "INJECT_" + f.name.upper()
            if key not in env:
                continue
            cur = getattr(base, f.name)
            raw = env[key]
            if isinstance(cur, bool):
                changes[f.name] = raw.lower() in ("1", "true", "yes", "on")
            elif isinstance(cur, int):
                changes[f.name] = int(raw)
            elif isinstance(cur, str):
                changes[f.name] = raw
            elif isinstance(cur, dict):
                try:
                    changes[f.name] = json.loads(raw)
                except ValueError:
                    raise ValueError(f"environment {key}: not JSON") from None
        return replace(base, **changes)
