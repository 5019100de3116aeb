"""Hypothesis profiles for the fuzz and property tests.

The default ("ci") keeps ./test.sh quick: a few dozen examples per test.
HYPOTHESIS_PROFILE=long runs many more, on demand:

    HYPOTHESIS_PROFILE=long python -m pytest -q -p no:cacheprovider tests/fuzz
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Every example drives a real server (gRPC, or a real Envoy): slow by
# hypothesis' standards, so no per-example deadline, and no "too slow" check.
_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
    "database": None,  # no .hypothesis/ directory in the worktree
    "print_blob": True,  # a failure prints how to reproduce it (@reproduce_failure)
}
settings.register_profile("ci", max_examples=40, **_COMMON)
settings.register_profile("long", max_examples=1000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
