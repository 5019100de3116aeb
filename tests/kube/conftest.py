"""Fixtures for tests against a real Kubernetes API server.

One cluster (etcd + kube-apiserver + kube-controller-manager, scripts/kube/up.sh)
per test session, stopped at the end. These tests never skip: a cluster that
cannot be built or started FAILS every test that needs it, with the reason.

The binaries are built (once per machine, cached outside the repo) before the
first test starts, during collection, so a cold build (6-10 min) does not run
into the per-test timeout."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.kube import KubeCluster, build

_HERE = Path(__file__).resolve().parent
_BUILD_ERROR: list[str] = []
COMPACTION = "--etcd-compaction-interval=10s --watch-cache-sizes=configmaps#0"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mine = [i for i in items if _HERE in Path(str(i.fspath)).resolve().parents]
    for item in mine:  # `-m "not kube"` deselects them
        item.add_marker(pytest.mark.kube)
    if not mine:
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    t0 = time.monotonic()
    if reporter is not None:
        reporter.write_line("kube tests: building/reusing kube-apiserver, etcd, controller-manager (scripts/kube)")
    try:
        bin_dir = build()
    except Exception as e:  # reported by the fixture, as a failure of each test
        _BUILD_ERROR.append(str(e))
        return
    if reporter is not None:
        reporter.write_line(f"kube tests: binaries in {bin_dir} ({time.monotonic() - t0:.0f}s)")


@pytest.fixture(scope="session")
def kube() -> Iterator[KubeCluster]:
    if _BUILD_ERROR:
        pytest.fail(f"cannot build the Kubernetes binaries:\n{_BUILD_ERROR[0]}", pytrace=False)
    run_dir = Path(tempfile.mkdtemp(prefix="istiod-py-kube-"))
    cluster = KubeCluster(run_dir)
    try:
        # Compaction every 10 s (default 5 min) and ConfigMaps watched straight from
        # etcd (no watch cache): old resourceVersions really expire within the
        # session, and watches meet real 410 Gone answers.
        cluster.start(apiserver_args=COMPACTION)
    except Exception as e:
        cluster.stop()
        pytest.fail(f"cannot start the Kubernetes control plane: {e}", pytrace=False)
    try:
        cluster.install_crds()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(run_dir, ignore_errors=True)  # etcd preallocates ~120 MB of WAL
