"""Fixtures for end-to-end tests with real Envoy processes.

An e2e test never skips because Envoy is missing: ``envoy_bin`` fails it loudly.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.envoy import EnvoyFactory, envoy_binary, envoy_factory_context


@pytest.fixture(scope="session")
def envoy_bin() -> str:
    """Path to the envoy binary; fails (never skips) the test if it is missing."""
    try:
        return envoy_binary()
    except AssertionError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture
def envoy_factory(envoy_bin: str, tmp_path: Path) -> Iterator[EnvoyFactory]:
    """``envoy_factory(bootstrap, name=..., wait=True)`` → started EnvoyProcess; all stopped after."""
    with envoy_factory_context(tmp_path / "envoy") as factory:
        yield factory
