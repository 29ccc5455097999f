#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export PREFECT_SERVER_ANALYTICS_ENABLED=false TOKENIZERS_PARALLELISM=true
export PREFECT_HOME="$PWD/.primer/prefect-test"
mkdir -p test-outputs
python -m pytest -q --timeout=900 "$@"
