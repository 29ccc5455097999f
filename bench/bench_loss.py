"""LM head + next-token loss, forward + backward: Primer's fused, chunked head against the plain
`F.cross_entropy(F.linear(h, W, b))` on the same inputs, in the same run.

    python bench/bench_loss.py                          # CPU, 8 x 256 tokens, d 128, vocab 4096 (tiny)
    python bench/bench_loss.py --d 1024 --vocab 51200 --tokens 4096 --threads 2

Both see the same hidden states, weights and targets; timed calls alternate between the two so that
machine noise hits both. Prints the median milliseconds of each and their ratio, and the ceiling any
head + loss can reach over plain: the three GEMMs both must do (logits, grad_h, grad_W), timed alone in the
same run. At phi-1-small's head (d 1024, vocab 51200, 2048 tokens) on CPU those GEMMs are ~90% of plain's
time, so no fusion can be 1.2x faster there; the fused head's gain is memory (it never allocates the
(tokens, vocab) logits, by construction) and speed where the softmax passes, not the GEMMs, dominate.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from model.loss import linear_cross_entropy  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=2048, help="rows (batch x seq)")
    ap.add_argument("--d", type=int, default=128, help="hidden size")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--chunk-rows", type=int, default=None, help="rows per chunk (default: model/loss.py's choice)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    h = torch.randn(a.tokens, a.d, generator=g).requires_grad_()
    w = (0.02 * torch.randn(a.vocab, a.d, generator=g)).requires_grad_()
    b = torch.zeros(a.vocab).requires_grad_()
    t = torch.randint(0, a.vocab, (a.tokens,), generator=g)

    def fused():
        linear_cross_entropy(h, w, b, t, chunk_rows=a.chunk_rows).backward()

    def plain():
        F.cross_entropy(F.linear(h, w, b), t).backward()

    p = torch.randn(a.tokens, a.vocab, generator=g)
    gw = torch.zeros(a.vocab, a.d)

    def gemms():  # the matrix products any implementation must do: logits, grad_h, grad_W
        with torch.no_grad():
            h @ w.t()
            p @ w
            gw.addmm_(p.t(), h)

    def timed(fn):
        h.grad = w.grad = b.grad = None
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    for fn in (fused, plain, gemms):
        for _ in range(3):
            timed(fn)
    secs = {"fused": [], "plain": [], "gemms": []}
    for _ in range(a.steps):
        secs["fused"].append(timed(fused))
        secs["plain"].append(timed(plain))
        secs["gemms"].append(timed(gemms))
    ms = {k: 1e3 * statistics.median(v) for k, v in secs.items()}
    print(f"tokens={a.tokens} d={a.d} vocab={a.vocab} threads={torch.get_num_threads()} steps={a.steps}")
    print(f"  fused head + loss: {ms['fused']:8.1f} ms  (model/loss.py, chunked)")
    print(f"  F.linear + F.cross_entropy: {ms['plain']:8.1f} ms")
    print(f"  the three GEMMs alone:      {ms['gemms']:8.1f} ms")
    print(f"speed-up fused / plain: {ms['plain'] / ms['fused']:.2f}x "
          f"(per-step median {statistics.median(p / f for p, f in zip(secs['plain'], secs['fused'])):.2f}x; "
          f"ceiling plain / GEMMs: {ms['plain'] / ms['gemms']:.2f}x)")


if __name__ == "__main__":
    main()
