#!/usr/bin/env bash
# GPU check (not part of CI; needs a CUDA machine, no network). Under ~10 minutes on one H100-class GPU:
#   1. small profile (phi-1-small shape), a few dozen bf16 steps on 1 GPU: tok/s per device, MFU, peak memory
#   2. with 2+ GPUs: 2 ranks ZeRO-2, SIGKILL after the first checkpoint, resume (resume step printed)
#   3. export the last checkpoint; score a few HumanEval tasks with the HF backend
#   4. attention: SDPA vs flash-attn (when installed), fwd+bwd ms at T=2048
# Usage: bench/gpu_check.sh [STEPS]   (from the repository root; writes under .primer/gpu_check/)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
STEPS=${1:-30}
WORK=.primer/gpu_check
rm -rf "$WORK" && mkdir -p "$WORK"
"$PY" -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: this check needs a GPU')"
NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())")
echo "GPUs: $NGPU ($("$PY" -c "import torch; print(torch.cuda.get_device_name(0))"))"
export PRIMER_STRICT_COLLECTIVES=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
COMMON=(--profile small --set store.root="$WORK/store" --set train.local_dir="$WORK/scratch"
        --set train.dtype=bf16 --set train.pretrain.max_steps="$STEPS" --set train.pretrain.save_every=10
        --set train.pretrain.eval_every=10 --set train.finetune_shards= )

echo "== 1 GPU, bf16, $STEPS steps"
"$PY" -m primer.cli train "${COMMON[@]}" --set train.nproc=1 --set train.zero_stage=0 \
    --set train.pretrain.batch_size=8 --set train.pretrain.micro_batch=8 | tee "$WORK/one.log"

if [ "$NGPU" -ge 2 ]; then
  echo "== 2 ranks ZeRO-2: SIGKILL after the first checkpoint, then resume"
  ARGS=("${COMMON[@]}" --set train.nproc=2 --set train.zero_stage=2 --set train.pretrain.batch_size=16
        --set train.pretrain.micro_batch=8 --set store.root="$WORK/store2")
  ( set -m; "$PY" -m primer.cli train "${ARGS[@]}" > "$WORK/two-killed.log" 2>&1 & echo $! > "$WORK/pid"; wait ) &
  for _ in $(seq 600); do
    grep -q "checkpoint.*'step': 10" "$WORK/two-killed.log" 2>/dev/null && break; sleep 1
  done
  kill -9 -- -"$(cat "$WORK/pid")" 2>/dev/null || true; wait || true
  "$PY" -m primer.cli train "${ARGS[@]}" | tee "$WORK/two.log"
  grep -o "resume.*" "$WORK/two.log" | head -1
fi

echo "== export + HumanEval (HF backend, a few tasks)"
"$PY" -m primer.cli export "${COMMON[@]}" --set train.nproc=1 --set train.zero_stage=0 \
    --set train.pretrain.batch_size=8 --set train.pretrain.micro_batch=8 | tee "$WORK/export.log" || \
  echo "export/evaluate failed: see $WORK/export.log"
"$PY" -m primer.cli evaluate "${COMMON[@]}" --set train.nproc=1 --set train.zero_stage=0 \
    --set train.pretrain.batch_size=8 --set train.pretrain.micro_batch=8 --set evaluate.limit=5 \
    --set evaluate.backend=hf | tee "$WORK/evaluate.log" || echo "evaluate failed: see $WORK/evaluate.log"

echo "== attention fwd+bwd at T=2048 (bf16)"
"$PY" - <<'PY'
import time, torch, torch.nn.functional as F
q, k, v = (torch.randn(4, 16, 2048, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
def bench(fn):
    for _ in range(3): fn().sum().backward()
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(10): fn().sum().backward()
    torch.cuda.synchronize(); return (time.perf_counter() - t) / 10 * 1e3
print(f"SDPA causal: {bench(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)):.2f} ms")
try:
    from flash_attn import flash_attn_func
    qt, kt, vt = (x.detach().transpose(1, 2).contiguous().requires_grad_() for x in (q, k, v))
    print(f"flash-attn:  {bench(lambda: flash_attn_func(qt, kt, vt, causal=True)):.2f} ms")
except ImportError:
    print("flash-attn: not installed (SDPA is used)")
print(f"peak memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
PY
echo "== throughput (last step events)"
grep -ho "tok/s/device.*" "$WORK"/one.log "$WORK"/two.log 2>/dev/null | tail -2 || true
