#!/usr/bin/env bash
# Idempotent setup: a project-local virtualenv with torch (CPU build, exact pin) and Primer installed.
# Re-running is cheap: the install is skipped while pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
stamp=".venv/.primer-installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  python -m pip install -q --upgrade pip
  # Exactly this torch first: any looser spec pulls a multi-GB CUDA build (see ENVIRONMENT notes in README).
  python -c "import torch" 2>/dev/null || python -m pip install -q torch==2.13.0
  python -m pip install -q -e ".[dev,dask,trackers]"
  rm -f .venv/.primer-installed-*
  touch "$stamp"
fi
