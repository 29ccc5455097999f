#!/usr/bin/env bash
# System packages the test suite needs beyond the virtualenv: Debian's chromium (headless UI test of the
# Prefect dashboard, tests/deploy/test_stack_e2e.py). Idempotent; needs root (or sudo) and apt.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
chromium --version
