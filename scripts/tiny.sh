#!/usr/bin/env bash
# Set up (if needed) and run the main job on the tiny profile: local artifact folder, local Prefect.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export PREFECT_SERVER_ANALYTICS_ENABLED=false TOKENIZERS_PARALLELISM=true
export PREFECT_HOME="${PREFECT_HOME:-$PWD/.primer/prefect}"
primer run --profile tiny "$@"
