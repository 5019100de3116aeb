"""Imports every feature module so each registers itself (see features.py)."""

from __future__ import annotations

from . import retry, timeout  # noqa: F401
