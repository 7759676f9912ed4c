#!/usr/bin/env bash
# Headless Chromium for tests/test_serve_web.py (Debian/Ubuntu). Called by CI before the tests; safe to re-run.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium >/dev/null || $SUDO apt-get install -y -qq chromium-browser >/dev/null
