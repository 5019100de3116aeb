#!/usr/bin/env bash
# Puts Debian's `prometheus` package on the machine for the telemetry e2e tests
# (tests/e2e/test_telemetry_metrics.py scrapes real Envoys with it) and the demo.
# Does nothing when `prometheus` is already on PATH. The package's service is never
# started: a policy-rc.d refuses it during the install (tests run their own
# Prometheus on loopback with deploy/prometheus/ config).
set -euo pipefail
if command -v prometheus >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; fi
policy=/usr/sbin/policy-rc.d
added_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod +x "$policy"
  added_policy=1
fi
cleanup() { if [[ $added_policy == 1 ]]; then $SUDO rm -f "$policy"; fi; }
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
command -v prometheus >/dev/null
