#!/usr/bin/env bash
# Debian packages the transparent-capture tests need: iptables (iptables-restore
# applies the capture rules inside test network namespaces) and iproute2 (ip netns,
# veth, bridge). Installs only what is missing; needs root (as CI and developers
# have here). Without root, prints why and exits 0: the capture e2e tests then fail
# loudly on their own precondition check instead of hiding here.
set -euo pipefail
missing=()
command -v iptables-restore >/dev/null 2>&1 || missing+=(iptables)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "install_netns_tools: not root, cannot install ${missing[*]}" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
