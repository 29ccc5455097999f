"""Causal self-attention with a fused QKV projection, partial rotary, packed-document masking and a KV cache.

Layout: activations stay (B, T, H, D) ("BTHD") end to end. SDPA receives transposed *views*
(B, H, T, D); both the CPU flash kernel and the CUDA kernels accept those strides, and the CPU kernel
returns its output BTHD-contiguous, so merging heads back to (B, T, C) is free. flash-attn's varlen
kernel wants (total_tokens, H, D), which is a view of BTHD as well.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .rotary import apply_rotary

try:  # optional GPU extra (pyproject [gpu]); never required
    from flash_attn import flash_attn_varlen_func
except Exception:  # ImportError, or a broken CUDA build
    flash_attn_varlen_func = None


@dataclass
class AttnSpec:
    """How tokens may attend, decided once per forward and shared by all layers.

    Exactly one of these modes applies:
      causal=True, mask None, cu_seqlens None -> plain causal (rows hold one document, or doc_mask=False)
      mask (B, 1, Tq, Tk) bool                -> explicit SDPA mask (packed rows on CPU, generation)
      cu_seqlens (n_docs+1,) int32            -> flash-attn varlen, one causal segment per document (CUDA)
    """

    causal: bool = True
    mask: torch.Tensor | None = None
    cu_seqlens: torch.Tensor | None = None
    max_seqlen: int = 0


class KVCache:
    """Preallocated keys/values for generation: (n_layer, B, T_max, H, D) each, plus a fill length.

    All rows share one length: generation left-pads prompts, so row r's real tokens end at the same
    index for every row and padding is hidden by the attention mask (see model/generate.py).
    """

    def __init__(self, n_layer: int, batch: int, max_len: int, n_head: int, head_dim: int, device, dtype):
        shape = (n_layer, batch, max_len, n_head, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0  # number of filled slots (same for all layers once a forward finishes)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, T, H, D) at [length, length+T); return all keys/values so far (B, length+T, H, D)."""
        start, end = self.length, self.length + k.shape[1]
        self.k[layer, :, start:end] = k
        self.v[layer, :, start:end] = v
        return self.k[layer, :, :end], self.v[layer, :, :end]


def flash_varlen_usable(device: torch.device, dtype: torch.dtype) -> bool:
    """flash-attn is installed and q/k/v will be half precision on a CUDA device."""
    return flash_attn_varlen_func is not None and device.type == "cuda" and dtype in (torch.float16, torch.bfloat16)


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_head: int, rotary_dim: int, attn_dropout: float):
        super().__init__()
        self.n_head, self.head_dim, self.rotary_dim = n_head, d_model // n_head, rotary_dim
        self.attn_dropout = attn_dropout
        # One GEMM for q, k, v. Output features are ordered [q | k | v], each (H, D) head-major, so
        # splitting for HF export is qkv.weight.chunk(3, dim=0).
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.dense = nn.Linear(d_model, d_model)

    def forward(
        self,
        h: torch.Tensor,  # (B, T, C), already layer-normed
        cos: torch.Tensor,  # broadcastable to (B, T, 2, H, r/2)
        sin: torch.Tensor,
        spec: AttnSpec,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        B, T, C = h.shape
        H, D = self.n_head, self.head_dim
        qkv = self.qkv(h).view(B, T, 3, H, D)
        # split/unbind rather than indexing: their backward is a cat/stack, not zero-fill + copy.
        qk, v = qkv.split([2, 1], dim=2)
        qk = apply_rotary(qk, cos, sin, self.rotary_dim)  # (B, T, 2, H, D) contiguous
        q, k = qk.unbind(2)  # each (B, T, H, D), strided views
        v = v.squeeze(2)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, Tk, H, D)
        p = self.attn_dropout if self.training else 0.0

        if spec.cu_seqlens is not None:
            # flash-attn varlen: documents are independent causal segments of the flattened batch.
            y = flash_attn_varlen_func(
                q.reshape(B * T, H, D), k.reshape(B * T, H, D), v.reshape(B * T, H, D),
                spec.cu_seqlens, spec.cu_seqlens, spec.max_seqlen, spec.max_seqlen,
                dropout_p=p, causal=True,
            )  # (B*T, H, D)
            return self.dense(y.view(B, T, C))

        y = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),  # (B, H, T, D) views
            attn_mask=spec.mask, dropout_p=p, is_causal=spec.causal and spec.mask is None,
        )  # (B, H, Tq, D)
        return self.dense(y.transpose(1, 2).reshape(B, T, C))
