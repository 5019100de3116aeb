#!/usr/bin/env bash
# Quick start, part 1: install, then run the control plane on the bundled sample
# mesh (deploy/samples/demo) with real Envoy sidecars and sample apps, and show
# the traffic flowing through them. Extra arguments go to the demo (--serve, --delta).
set -euo pipefail
cd "$(dirname "$0")"
./scripts/setup.sh
. .venv/bin/activate
exec python -m istiod_py.demo.run "$@"
