"""Imports every feature module so each registers itself (see features.py)."""

from __future__ import annotations

from . import (  # noqa: F401
    cors,
    ext_authz,
    fault,
    jwt,
    local_ratelimit,
    mirror,
    mtls,
    rbac,
    retry,
    timeout,
    traffic_policy,
)
