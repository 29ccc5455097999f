#!/usr/bin/env bash
# Multi-node DeepSpeed launch for phi-1 (ZeRO-2, bf16): run on the first node of the hostfile.
#   infra/deepspeed/launch.sh [extra training args...]
# Env: HOSTFILE (infra/deepspeed/hostfile), DS_CONFIG (infra/deepspeed/ds_config_zero2.json),
#      MASTER_ADDR (first host), MASTER_PORT (29500), TRAIN_SCRIPT (the training entry point).
# Keys (AWS_*, for an s3:// store) must be in each node's environment: list them in ~/.deepspeed_env
# (DeepSpeed exports the variables named there to every node) — never on this command line.
set -euo pipefail
cd "$(dirname "$0")/../.."
HOSTFILE=${HOSTFILE:-infra/deepspeed/hostfile}
DS_CONFIG=${DS_CONFIG:-infra/deepspeed/ds_config_zero2.json}
MASTER_ADDR=${MASTER_ADDR:-$(grep -v '^\s*#' "$HOSTFILE" | awk 'NF {print $1; exit}')}
MASTER_PORT=${MASTER_PORT:-29500}
TRAIN_SCRIPT=${TRAIN_SCRIPT:-primer/training/train_ds.py}
if [ ! -f "$TRAIN_SCRIPT" ]; then
  echo "launch.sh: $TRAIN_SCRIPT not found; set TRAIN_SCRIPT to the DeepSpeed training entry point" >&2; exit 2
fi
export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-$PWD/.primer/torch-extensions}
exec deepspeed --hostfile "$HOSTFILE" --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" \
  "$TRAIN_SCRIPT" --deepspeed_config "$DS_CONFIG" --profile phi1 "$@"
