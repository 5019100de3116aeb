"""EnvoyFilter configPatches applied to the translated xDS (see patch.py)."""

from __future__ import annotations

from .patch import HCM, apply, translation_errors

__all__ = ["HCM", "apply", "translation_errors"]
