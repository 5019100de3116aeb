"""EnvoyFilter configPatches applied to the translated xDS, as istiod does.

model.py (compiled forms, what each applyTo accepts) <- values.py (patch value
-> Envoy proto, merge) <- validate.py (would Envoy reject it) <- compile.py
(compile once per state, select a proxy's patches) <- targets.py (match and
patch one cluster / listener / route configuration) <- patch.py (the entry
point over the translator's Resources, see its docstring)."""

from __future__ import annotations

from .compile import translation_errors
from .model import HCM
from .patch import apply

__all__ = ["HCM", "apply", "translation_errors"]
