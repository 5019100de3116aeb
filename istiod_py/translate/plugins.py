"""Imports every feature module so each registers itself (see features.py)."""

from __future__ import annotations

from . import (  # noqa: F401
    cors,
    fault,
    local_ratelimit,
    mirror,
    mtls,
    retry,
    timeout,
    traffic_policy,
)
