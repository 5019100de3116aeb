"""Imports every feature module so each registers itself (see features.py)."""

from __future__ import annotations

from .security import (  # noqa: F401
    ext_authz,
    jwt,
    mtls,
    rbac,
)
from .telemetry import access_log, metrics, tracing  # noqa: F401
from .traffic import (  # noqa: F401
    cors,
    fault,
    local_ratelimit,
    mirror,
    retry,
    timeout,
    traffic_policy,
)
