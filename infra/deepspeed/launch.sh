#!/usr/bin/env bash
# Multi-node DeepSpeed training for phi-1: run on the first node of the hostfile.
#   infra/deepspeed/launch.sh [--set key=value ...]
# The train flow launches `deepspeed --hostfile ... --module primer.training.program` itself (tasks/train.py);
# this script only points it at the hostfile and a shared store.
# Env: HOSTFILE (infra/deepspeed/hostfile), STORE (an s3:// URI every node can read and write),
#      PROFILE (phi1).
# Keys (AWS_*, for an s3:// store) must be in each node's environment: list them in ~/.deepspeed_env
# (DeepSpeed exports the variables named there to every node) — never on this command line.
# Every node needs the same checkout and .venv at the same path, and passwordless ssh from this node.
set -euo pipefail
cd "$(dirname "$0")/../.."
HOSTFILE=${HOSTFILE:-infra/deepspeed/hostfile}
PROFILE=${PROFILE:-phi1}
if [ -z "${STORE:-}" ]; then
  echo "launch.sh: set STORE to an s3:// URI shared by every node (local folders are not shared)" >&2; exit 2
fi
export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-$PWD/.primer/torch_extensions}
exec .venv/bin/primer train --profile "$PROFILE" --store "$STORE" --set "train.hostfile=$HOSTFILE" "$@"
