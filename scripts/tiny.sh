#!/usr/bin/env bash
# Set up (if needed) and run the main job on the tiny profile: local artifact folder, local Prefect.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export PREFECT_SERVER_ANALYTICS_ENABLED=false TOKENIZERS_PARALLELISM=true
export PREFECT_HOME="${PREFECT_HOME:-$PWD/.primer/prefect}"
mkdir -p "$PREFECT_HOME"   # Prefect cannot create its SQLite database in a missing folder
# MBPP is never bundled; use a local copy when one sits beside the checkout (else MBPP is skipped, with a note).
if [ -z "${PRIMER_MBPP_PATH:-}" ] && [ -f ../shared/data/mbpp/mbpp.jsonl ]; then
  export PRIMER_MBPP_PATH="$(cd ../shared/data/mbpp && pwd)/mbpp.jsonl"
fi
primer run --profile tiny "$@"
