"""Fixtures shared by every test suite."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# `tests` is not an installed package; make `tests.support` importable however pytest is run.
_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests.support.net import Loopback  # noqa: E402
from tests.support.upstreams import UpstreamFactory  # noqa: E402


@pytest.fixture
def loopback() -> Loopback:
    """``loopback.ip()`` → a fresh 127.A.B.C address for this test."""
    return Loopback()


@pytest.fixture
def upstreams() -> Iterator[UpstreamFactory]:
    """``upstreams.http(name) / .h2 / .grpc / .websocket / .tcp`` → started server; all stopped after."""
    factory = UpstreamFactory()
    try:
        yield factory
    finally:
        factory.stop_all()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Everything under tests/e2e runs real Envoy: mark it so `-m "not e2e"` deselects it.
    e2e_dir = Path(__file__).resolve().parent / "e2e"
    for item in items:
        if e2e_dir in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)
