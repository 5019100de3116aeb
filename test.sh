#!/usr/bin/env bash
# Quick start, part 2: install, then run the whole test suite (unit, golden,
# protocol, and end-to-end tests with real Envoy). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
./scripts/setup.sh
./scripts/install_netns_tools.sh  # iptables, iproute2 for the capture tests (network namespaces)
./scripts/browser.sh  # Chromium + chromedriver for the mesh page test, when missing
# Debian's prometheus for the telemetry e2e tests (installed only when missing).
./scripts/install_prometheus.sh
# Jaeger (built from Go modules once, cached outside the repo) for the tracing e2e tests.
./scripts/build_jaeger.sh >/dev/null
. .venv/bin/activate
./scripts/gen_protos.sh --check
ruff check istiod_py tests benchmarks
mypy
# A real kube-apiserver/etcd/controller-manager for tests/kube, built from Go modules once per
# machine into ~/.cache/istiod_py/kube (cold: 6-10 min; then instant). Built here, not inside a
# test, so a cold build never counts against a test's timeout.
./scripts/kube/build.sh >/dev/null
exec python -m pytest -q -p no:cacheprovider "$@"
