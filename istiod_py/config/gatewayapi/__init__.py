"""Kubernetes Gateway API -> the project's Istio model (as istiod's pilot/pkg/config/kube/gateway).

- `kinds.load`: strict parsing of one Gateway API object (protos/gateway_api/v1).
- `convert.convert` / `Converter`: the whole set of Gateway API resources -> generated Istio
  Gateways and VirtualServices plus the spec's status conditions.
"""

from .kinds import GROUP, INTERNAL_KINDS, KINDS, KUBERNETES_GATEWAY, is_gateway_api, load

__all__ = ["GROUP", "INTERNAL_KINDS", "KINDS", "KUBERNETES_GATEWAY", "is_gateway_api", "load"]
