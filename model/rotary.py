"""Partial rotary position embeddings (RoPE on the first rotary_dim dims of each head).

Same convention as HF Phi / GPT-NeoX ("rotate half"): the rotary dims are split into two halves
x1 = x[:r/2], x2 = x[r/2:r] that rotate as pairs (x1[i], x2[i]) by angle pos * theta^(-2i/r).
The remaining head_dim - rotary_dim dims pass through untouched.
"""

from __future__ import annotations

import torch


def rotary_tables(rotary_dim: int, max_seq_len: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables, each (max_seq_len, rotary_dim // 2) fp32. Angles computed in fp32 like HF."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, rotary_dim, 2, dtype=torch.int64).float() / rotary_dim))
    angles = torch.arange(max_seq_len, dtype=torch.int64).float()[:, None] * inv_freq[None, :]  # (T, r/2)
    return angles.cos(), angles.sin()


def gather_rotary(cos: torch.Tensor, sin: torch.Tensor, positions: torch.Tensor | None, T: int, dtype: torch.dtype):
    """Tables -> per-token cos/sin broadcastable against (B, T, n, H, r/2).

    positions None means 0..T-1 for every row (unsplit rows): a slice, no gather.
    Otherwise positions is (B, T) and we gather: (B, T, 1, 1, r/2).
    """
    if positions is None:
        c, s = cos[:T], sin[:T]  # (T, r/2)
        return c.to(dtype)[None, :, None, None, :], s.to(dtype)[None, :, None, None, :]
    c, s = cos[positions], sin[positions]  # (B, T, r/2)
    return c.to(dtype)[:, :, None, None, :], s.to(dtype)[:, :, None, None, :]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, rotary_dim: int) -> torch.Tensor:
    """Rotate the first rotary_dim dims of the last axis of x: (B, T, n, H, D) -> same shape, contiguous.

    q and k come in together as n=2 so one set of kernels serves both.
    """
    if rotary_dim == 0:
        return x.contiguous()
    half = rotary_dim // 2
    # split (not slicing): its backward is one cat, where each slice's backward would zero-fill a
    # full-size gradient buffer.
    x1, x2, rest = x.split([half, half, x.shape[-1] - rotary_dim], dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest], dim=-1)
