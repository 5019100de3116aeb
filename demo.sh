#!/usr/bin/env bash
# Quick start, part 1: install, then show the mesh (istiod_py/demo/__main__.py):
#   --mode kube      as root on Linux: a real Kubernetes control plane, the one-host node,
#                    `istiod-py install --set profile=demo`, Istio's bookinfo injected and
#                    captured by iptables, traffic through the ingress gateway, teardown
#                    (builds the Kubernetes binaries once if needed: 8-9 min)
#   --mode loopback  the sample mesh (deploy/samples/demo) on 127.0.0.x, real Envoys
#   (default auto: kube when possible and the binaries are built, else loopback, saying why)
# Other arguments go to the chosen demo (--serve, --requests N; loopback: --delta).
set -euo pipefail
cd "$(dirname "$0")"
./scripts/setup.sh
. .venv/bin/activate
exec python -m istiod_py.demo "$@"
