"""Training throughput of Primer's PhiLM vs Hugging Face PhiForCausalLM (same config, same weights).

One training step = forward + backward + AdamW step, on a (batch x seq) batch of random token ids.
Both models get the same config, the same initial weights (HF is converted from Primer), the same
optimizer settings, the same threads and the same batches; timed steps alternate between the two so
that machine noise hits both. Rows contain no EOS for the head-to-head (HF does no document masking);
Primer's packed-row path (EOS inside rows -> block-diagonal mask) is timed separately.

    python bench/bench_model.py                                  # CPU, tiny preset, 8 x 256
    python bench/bench_model.py --vocab 51200                    # tiny body, GPT-2-size vocab
    python bench/bench_model.py --device cuda --config phi1_small --seq 2048 --dtype bf16 --batch 8

On CUDA it also prints model FLOPs utilization:
    MFU = (6 * N_matmul + 12 * n_layer * d_model * seq) * tokens/s / peak
with N_matmul = parameters minus the embedding table (a lookup, not a matmul), and the second term the
attention score/value matmuls (fwd+bwd, no causal discount), as in PaLM appendix B. Peak defaults to
989 TFLOP/s (H100 SXM dense bf16).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import nullcontext

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from model import PhiLM, preset  # noqa: E402
from model.hf import to_hf  # noqa: E402


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--config", default="tiny", help="model preset (tiny, phi1_small, phi1)")
    ap.add_argument("--vocab", type=int, default=None, help="override vocab_size")
    ap.add_argument("--layers", type=int, default=None, help="override n_layer")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help="autocast dtype")
    ap.add_argument("--dropout", type=float, default=0.0, help="embd/resid/attn dropout, same on both")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per model (interleaved)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--only", default="both", choices=["both", "primer", "hf"])
    ap.add_argument("--compile", action="store_true", help="torch.compile Primer's blocks (PhiLM.compile_blocks)")
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    return ap.parse_args()


def main() -> None:
    a = parse()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    over = dict(max_seq_len=max(a.seq, preset(a.config).max_seq_len), embd_dropout=a.dropout,
                resid_dropout=a.dropout, attn_dropout=a.dropout)
    if a.vocab:
        over["vocab_size"] = a.vocab
    if a.layers:
        over["n_layer"] = a.layers
    over["eos_token_id"] = min(preset(a.config).eos_token_id, over.get("vocab_size", 1 << 30) - 1)
    cfg = preset(a.config, **over)
    torch.manual_seed(0)
    with torch.device(dev):
        primer = PhiLM(cfg)
    models = {"primer": primer}
    if a.only in ("both", "hf"):
        hf = to_hf(primer, attn_implementation="sdpa")  # same weights
        assert hf.config._attn_implementation == "sdpa"
        models["hf"] = hf
    if a.only == "hf":
        del models["primer"]
    amp_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[a.dtype]
    amp = (lambda: torch.autocast(a.device, dtype=amp_dtype)) if amp_dtype else nullcontext

    g = torch.Generator().manual_seed(1)
    eos = cfg.eos_token_id

    def batch():
        x = torch.randint(0, cfg.vocab_size, (a.batch, a.seq + 1), generator=g)
        x[x == eos] = (eos + 1) % cfg.vocab_size  # no EOS: one document per row
        return x.to(dev)

    def packed_batch():  # ~4 documents per row, for Primer's masked path
        x = batch()
        x[:, torch.randint(1, a.seq, (3,), generator=g)] = eos
        return x

    steps = {}
    for name, m in models.items():
        m.train()
        opt = torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.1, fused=(a.device == "cuda") or None)
        if name == "primer":
            if a.compile:
                m.compile_blocks()
            fwd = m

            def step(x, fwd=fwd, opt=opt):
                with amp():
                    _, loss = fwd(x[:, :-1], x[:, 1:])
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                return loss
        else:

            def step(x, m=m, opt=opt):
                with amp():
                    loss = m(input_ids=x[:, :-1], labels=x[:, :-1]).loss  # HF shifts labels itself
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                return loss
        steps[name] = step

    def sync():
        if a.device == "cuda":
            torch.cuda.synchronize()

    def timed(fn, x):
        sync()
        t0 = time.perf_counter()
        fn(x)
        sync()
        return time.perf_counter() - t0

    for name, fn in steps.items():
        for _ in range(a.warmup):
            fn(batch())
        if name == "primer":
            for _ in range(a.warmup):
                fn(packed_batch())
    # Step-level interleaving: each timed step of one model is followed by one of the other on the same
    # batch, so that load from other processes hits both alike. Report medians (robust to spikes).
    secs: dict[str, list[float]] = {k: [] for k in steps}
    secs["primer packed"] = []
    for _ in range(a.steps):
        x = batch()
        for name, fn in steps.items():
            secs[name].append(timed(fn, x))
        if "primer" in steps:
            secs["primer packed"].append(timed(steps["primer"], packed_batch()))
    secs = {k: v for k, v in secs.items() if v}
    tok = a.batch * a.seq
    med = {k: tok / statistics.median(v) for k, v in secs.items()}

    n = sum(p.numel() for p in primer.parameters())
    print(f"config={a.config} {cfg.n_layer}L d{cfg.d_model} h{cfg.n_head} mlp{cfg.d_mlp} vocab{cfg.vocab_size} "
          f"params={n:,} batch={a.batch}x{a.seq} dtype={a.dtype} device={a.device} "
          f"threads={torch.get_num_threads()} dropout={a.dropout} compile={a.compile}")
    for k, v in secs.items():
        q = statistics.quantiles([tok / t for t in v], n=4) if len(v) > 1 else [tok / v[0]] * 3
        note = "  (3 EOS per row: block-diagonal mask)" if k == "primer packed" else ""
        print(f"{k:>14}: {med[k]:10.0f} tok/s  median of {len(v)} steps, IQR {q[0]:.0f}-{q[2]:.0f}{note}")
    if "primer" in med and "hf" in med:
        pair = statistics.median(h / p for p, h in zip(secs["primer"], secs["hf"]))
        best = min(secs["hf"]) / min(secs["primer"])
        print(f"ratio primer/hf: {med['primer'] / med['hf']:.2f} (median of per-step pair ratios: {pair:.2f}; "
              f"fastest step vs fastest step: {best:.2f})")
    if a.device == "cuda":
        n_matmul = n - cfg.vocab_size * cfg.d_model
        flops_per_tok = 6 * n_matmul + 12 * cfg.n_layer * cfg.d_model * a.seq
        for k, v in med.items():
            print(f"{k} MFU: {100 * flops_per_tok * v / (a.peak_tflops * 1e12):.1f}% of {a.peak_tflops:g} TFLOP/s")
        print(f"peak memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
