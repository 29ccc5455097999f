#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/ci-system-deps.sh   # Debian's chromium for the dashboard test; a no-op when present
. .venv/bin/activate
export PREFECT_SERVER_ANALYTICS_ENABLED=false TOKENIZERS_PARALLELISM=true
export PREFECT_HOME="$PWD/.primer/prefect-test"
mkdir -p "$PREFECT_HOME"
mkdir -p test-outputs
python -m pytest -q --timeout=900 "$@"
