#!/usr/bin/env bash
# System packages the test suite needs beyond the virtualenv, from Debian: chromium (headless checks of the
# Prefect UI, tests/deploy/test_stack_e2e.py and test_team_stack_e2e.py) and postgresql (the team stack's
# database: `scripts/stack.sh up --postgres`, test_team_stack_e2e.py). Installs only what is missing;
# idempotent; needs root (or sudo) and apt.
set -euo pipefail
need=()
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  need+=(chromium)
fi
# Debian puts initdb/pg_ctl in /usr/lib/postgresql/<version>/bin (some images link them into PATH).
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need+=(postgresql)
fi
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "installed: ${need[*]}"
