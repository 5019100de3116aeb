#!/usr/bin/env bash
# Debian's Chromium and its WebDriver, for the live mesh page's browser test
# (tests/e2e/test_mesh_page.py). Installed only when missing; needs root (apt).
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "scripts/browser.sh: chromium/chromedriver missing and not root; run: apt-get install chromium chromium-driver" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
command -v chromium >/dev/null && command -v chromedriver >/dev/null
