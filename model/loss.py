"""Next-token cross entropy fused with the LM head: the (N, V) logits are never materialised whole.

    loss = mean over targets != -100 of  logsumexp(h W^T + b) - (h W^T + b)[target]

Same value and gradients as F.cross_entropy(F.linear(h, W, b).float(), targets, ignore_index=-100), but
the work goes chunk by chunk over rows: each chunk's logits (rows, V) are computed, turned into the
loss *and* the gradient of the summed loss (softmax - onehot) right away, multiplied into grad_h and
accumulated into grad_W / grad_b, then dropped. Backward only scales the saved sums by grad_loss / n.

Why: with V = 51200 the logits and their softmax are the largest activations of the model (an fp32
(N, V) buffer is 3.4 GB for 8 x 2048 tokens), and on CPU each full-size pass (log_softmax, softmax, scatter,
scale) streams them through memory while a chunk stays in cache: for the head + loss of the tiny
model's 8 x 256 batch, 54.6 ms against 77.2 ms for F.linear + F.cross_entropy (bench/bench_loss.py).

Precision: chunk logits are computed in the autocast dtype when autocast is on (as nn.Linear would),
log-sum-exp, softmax and the gradient sums in fp32 (or fp64 for fp64 inputs), cast to the inputs'
dtypes only after the 1/n (so fp16 gradients do not underflow).
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100


def _chunk_rows(n_rows: int, vocab: int, device: torch.device) -> int:
    """Rows per chunk, by shape.

    Small vocab on CPU: ~4 MB of fp32 logits per chunk, so each chunk's softmax passes stay in cache (the
    gain at the tiny model's head). Large vocab (>= 16384) on CPU: the three GEMMs are ~90% of the work and
    run fastest tall, and every chunk re-reads the whole (V, C) fp32 grad_W: up to 512 MB of logits per
    chunk (2621 rows at V = 51200, so phi-1-small's 2048-row head is one chunk; profiled, 4 chunks of 512
    rows spent 8.7 s in GEMMs that take 6.8 s unchunked). GPU: ~256 MB per chunk (few launches). Never
    fewer than 128 rows, so the GEMMs stay efficient."""
    if device.type == "cpu":
        budget = (1 << 27) if vocab >= 16384 else (1 << 20)  # elements
    else:
        budget = 1 << 26
    return max(1, min(n_rows, max(128, budget // vocab)))


def _compute_dtype(h: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    if torch.is_autocast_enabled(h.device.type):
        return torch.get_autocast_dtype(h.device.type)
    return torch.promote_types(h.dtype, weight.dtype)


class _Rows:
    """The inputs cast for the head GEMMs, the per-row loss weights, and the row chunks to walk."""

    def __init__(self, h, weight, bias, targets, chunk_rows):
        cd = _compute_dtype(h, weight)
        self.acc = torch.promote_types(cd, torch.float32)  # log-sum-exp / softmax dtype
        valid = targets != IGNORE_INDEX  # (N,)
        self.tgt = torch.where(valid, targets, 0)[:, None]  # (N, 1) safe gather index
        self.valid = valid.to(self.acc)  # (N,) 1 = counts, 0 = ignored
        # The mean's 1/n is applied to the sums at the very end, never to per-element gradients: with
        # fp16 GEMM inputs, (softmax - onehot) / n would underflow before any loss scaling could help.
        # NaN when every target is ignored, exactly like F.cross_entropy.
        self.inv_n = 1.0 / valid.sum().to(self.acc)  # () scalar
        self.h, self.w = h.to(cd), weight.to(cd)
        self.b = bias.to(cd) if bias is not None else None
        n = h.shape[0]
        step = chunk_rows or _chunk_rows(n, weight.shape[0], h.device)
        self.slices = [slice(s, min(s + step, n)) for s in range(0, n, step)]

    def logits(self, sl: slice) -> torch.Tensor:
        """(r, V) logits of the rows in sl, in the accumulation dtype."""
        out = self.h[sl] @ self.w.t() if self.b is None else torch.addmm(self.b, self.h[sl], self.w.t())
        return out.to(self.acc)

    def loss_and_softmax(self, sl: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """This chunk's summed loss over valid rows (a scalar) and its softmax (r, V) in the accumulation dtype.

        One fused softmax pass gives the log-sum-exp too: at the arg-max the softmax is exp(0) / sum,
        so lse = max + log(sum) = max - log(max softmax), and max softmax >= 1/V never underflows.
        (Measured ~2-4x faster on CPU than logsumexp + exp, which run as separate unfused passes.)
        """
        logits = self.logits(sl)  # (r, V)
        picked = logits.gather(1, self.tgt[sl]).squeeze(1)  # (r,) logit of the target
        top = logits.amax(-1)  # (r,)
        p = torch.softmax(logits, -1)
        del logits
        lse = top - p.amax(-1).log()
        return ((lse - picked) * self.valid[sl]).sum(), p


def _loss_only(h, weight, bias, targets, chunk_rows) -> torch.Tensor:
    rows = _Rows(h, weight, bias, targets, chunk_rows)
    return torch.stack([rows.loss_and_softmax(sl)[0] for sl in rows.slices]).sum() * rows.inv_n


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias, targets, chunk_rows):
        # h (N, C), weight (V, C), bias (V,) or None, targets (N,) int64 with IGNORE_INDEX = no loss
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        # Gradients of the *summed* loss, kept in fp32 (or fp64); backward applies grad_loss / n.
        f32 = torch.promote_types(h.dtype, torch.float32)
        grad_h = torch.empty(h.shape, dtype=f32, device=h.device) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=f32, device=weight.device) if need_w else None
        grad_b = torch.zeros(bias.shape, dtype=f32, device=bias.device) if need_b else None
        parts = []
        # Autocast stays off inside: _Rows casts to the autocast dtype itself, and the gradient GEMMs
        # below must not be re-cast behind our back.
        with torch.autocast(h.device.type, enabled=False):
            rows = _Rows(h, weight, bias, targets, chunk_rows)
            for sl in rows.slices:
                part, p = rows.loss_and_softmax(sl)  # p (r, V)
                parts.append(part)
                # d(summed loss) / d logits = (softmax - onehot(target)) * valid, built in the softmax
                # buffer; every entry is in [-1, 1], safe in any GEMM dtype.
                p.mul_(rows.valid[sl, None])
                p.scatter_add_(1, rows.tgt[sl], -rows.valid[sl, None])
                pc = p.to(rows.w.dtype)  # back to the GEMM dtype (no copy in fp32)
                if grad_h is not None:
                    grad_h[sl] = pc @ rows.w  # (r, C)
                if grad_w is not None:  # (V, C), accumulated in fp32 across chunks
                    if pc.dtype == grad_w.dtype:
                        grad_w.addmm_(pc.t(), rows.h[sl])
                    else:
                        grad_w += pc.t() @ rows.h[sl]
                if grad_b is not None:
                    grad_b += p.sum(0)
        ctx.save_for_backward(grad_h, grad_w, grad_b, rows.inv_n)
        ctx.dtypes = (h.dtype, weight.dtype, bias.dtype if bias is not None else None)
        return torch.stack(parts).sum() * rows.inv_n

    @staticmethod
    def backward(ctx, grad_loss):
        *grads, inv_n = ctx.saved_tensors
        factor = grad_loss * inv_n  # () upstream gradient (loss scale, 1/accumulation steps) over n
        out = [None if g is None else (g * factor).to(dtype) for g, dtype in zip(grads, ctx.dtypes)]
        return (*out, None, None)  # h, weight, bias; nothing for targets, chunk_rows


def linear_cross_entropy(
    h: torch.Tensor,  # (..., C) final hidden states
    weight: torch.Tensor,  # (V, C) LM head weight
    bias: torch.Tensor | None,  # (V,) LM head bias
    targets: torch.Tensor,  # (...) next-token ids aligned with h; -100 = ignore
    chunk_rows: int | None = None,  # rows per chunk; None = sized for the device
) -> torch.Tensor:
    """Mean next-token cross entropy of the LM head's logits, without materialising them (fp32 scalar)."""
    h = h.reshape(-1, h.shape[-1])
    targets = targets.reshape(-1)
    if h.shape[0] != targets.shape[0]:
        raise ValueError(f"{h.shape[0]} hidden rows but {targets.shape[0]} targets")
    params = (h, weight) if bias is None else (h, weight, bias)
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in params)):
        return _loss_only(h, weight, bias, targets, chunk_rows)  # validation/scoring: no gradient work
    return _LinearCrossEntropy.apply(h, weight, bias, targets, chunk_rows)
