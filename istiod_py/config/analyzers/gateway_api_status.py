"""ISTPY0004 GatewayAPICondition: a Gateway API resource whose status condition is
unhealthy (a route's backend not found, a listener not programmed, ...), the
conditions istiod would write to its status (config/gatewayapi/status.py). Istio's
analyzers have no such code; istiod_py reports them so file mode shows them too."""

from __future__ import annotations

from collections.abc import Iterator

from istiod_py.config.analyzers.context import Context
from istiod_py.config.analyzers.messages import Message

CODE = "ISTPY0004"


def analyze(ctx: Context) -> Iterator[Message]:
    if not ctx.gateway_api_status:
        return
    from istiod_py.config.gatewayapi.status import warnings

    for w in warnings(ctx.gateway_api_status):
        yield Message(CODE, "Warning", f"{w.field}: {w.message}", w.kind, w.namespace, w.name, w.source, w.field)
