"""The phi-1 decoder (same function as HF `PhiForCausalLM`, laid out for training speed).

    x = embed(ids)                                   (B, T, C)
    for each block:  h = ln(x);  x = x + attn(h) + mlp(h)     attention and MLP in parallel
    logits = lm_head(ln_f(x))                        (B, T, V), lm_head has a bias
    loss = fused lm_head + cross entropy, chunked over rows, when targets are given (model/loss.py)

Packed rows (documents joined by EOS) get positions that restart per document and attention that does
not cross documents; see model/packing.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .attention import AttnSpec, CausalSelfAttention, KVCache, flash_varlen_usable
from .config import ModelConfig
from .loss import linear_cross_entropy
from .packing import block_causal_mask, cu_seqlens, doc_layout
from .rotary import gather_rotary, rotary_tables


class MLP(nn.Module):
    def __init__(self, d_model: int, d_mlp: int):
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_mlp)
        self.fc2 = nn.Linear(d_mlp, d_model)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # One fused kernel for HF's "gelu_new" (0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3)))): same function,
        # but HF evaluates it as ~8 separate ops, each saving a (B, T, d_mlp) tensor for backward.
        return self.fc2(F.gelu(self.fc1(h), approximate="tanh"))


class LMHead(nn.Linear):
    """The output projection (with a bias, as HF Phi). Given targets it returns the mean next-token loss
    instead of logits, computed chunk by chunk so the (B, T, V) logits never exist (model/loss.py).

    The loss runs inside this module's forward so that DeepSpeed ZeRO-3, which gathers a module's
    partitioned parameters around its forward, has the weight in place.
    """

    def forward(self, h: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        if targets is None:
            return super().forward(h)  # (..., V) logits
        return linear_cross_entropy(h, self.weight, self.bias, targets)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.attn = CausalSelfAttention(cfg.d_model, cfg.n_head, cfg.rotary_dim, cfg.attn_dropout)
        self.mlp = MLP(cfg.d_model, cfg.d_mlp)
        self.resid_dropout = cfg.resid_dropout

    def forward(self, x, cos, sin, spec: AttnSpec, cache: KVCache | None = None, layer: int = 0):
        h = self.ln(x)
        a = self.attn(h, cos, sin, spec, cache, layer)
        m = self.mlp(h)
        if self.resid_dropout and self.training:
            a = F.dropout(a, self.resid_dropout, True)
            m = F.dropout(m, self.resid_dropout, True)
        return x + a + m


class PhiLM(nn.Module):
    grad_checkpointing: bool = False  # set True to trade compute for activation memory in training

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.lm_head = LMHead(cfg.d_model, cfg.vocab_size)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        # Rotary tables are derived state: not saved, rebuilt on load, kept fp32 (cast per forward).
        cos, sin = rotary_tables(cfg.rotary_dim, cfg.max_seq_len, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def compute_dtype(self, device: torch.device) -> torch.dtype:
        """dtype of q/k/v: the autocast dtype when autocast is on for this device, else the weights'."""
        if torch.is_autocast_enabled(device.type):
            return torch.get_autocast_dtype(device.type)
        return self.embed.weight.dtype

    # ---------------------------------------------------------------- init
    def reset_parameters(self) -> None:
        """GPT-2 style init: N(0, init_std), zero biases, residual-output projections scaled by 1/sqrt(2L)."""
        std = self.cfg.init_std
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif ".ln." in name or name.startswith("ln_f"):
                nn.init.ones_(p)
            elif name.endswith(("attn.dense.weight", "mlp.fc2.weight")):
                nn.init.normal_(p, 0.0, std / math.sqrt(2 * self.cfg.n_layer))
            else:
                nn.init.normal_(p, 0.0, std)

    def compile_blocks(self, **kwargs) -> "PhiLM":
        """torch.compile each block in place (regional compilation: one graph serves every layer).

        Optional. Fuses the rotary, GELU, LayerNorm and residual elementwise work; compiling takes
        ~15 s plus ~5 s for the packed-row (mask) variant on 2 CPU cores. On the CPU tiny config it gave
        no reliable speed-up over eager (docs/model.md); it may pay off on GPU.
        """
        for block in self.blocks:
            block.compile(**kwargs)
        return self

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def optim_groups(self, weight_decay: float) -> list[dict]:
        """AdamW parameter groups: decay matrices (and embeddings), not biases or LayerNorm gains."""
        decay, no_decay = [], []
        for p in self.parameters():  # parameters() de-duplicates a tied embedding
            (decay if p.dim() >= 2 else no_decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    # ---------------------------------------------------------------- forward
    def attn_spec(self, input_ids: torch.Tensor, doc_mask: bool) -> tuple[torch.Tensor | None, AttnSpec]:
        """Positions (None = 0..T-1 in every row) and the attention mode for a training/scoring batch."""
        layout = doc_layout(input_ids, self.cfg.eos_token_id, doc_mask)
        if layout.doc_ids is None:
            return None, AttnSpec(causal=True)  # fast path: no mask is materialised
        if flash_varlen_usable(input_ids.device, self.compute_dtype(input_ids.device)):
            cu, max_len = cu_seqlens(layout.positions)
            return layout.positions, AttnSpec(causal=True, cu_seqlens=cu, max_seqlen=max_len)
        return layout.positions, AttnSpec(causal=False, mask=block_causal_mask(layout.doc_ids))

    def hidden(
        self,
        input_ids: torch.Tensor,  # (B, T)
        positions: torch.Tensor | None,  # (B, T) or None for 0..T-1
        spec: AttnSpec,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Final-LayerNormed hidden states (B, T, C). Advances cache.length by T when a cache is given."""
        B, T = input_ids.shape
        x = self.embed(input_ids)
        if self.cfg.embd_dropout and self.training:
            x = F.dropout(x, self.cfg.embd_dropout, True)
        cos, sin = gather_rotary(self.rope_cos, self.rope_sin, positions, T, self.compute_dtype(x.device))
        for i, block in enumerate(self.blocks):
            if self.grad_checkpointing and self.training and cache is None:
                # Recompute each block in backward: activation memory O(1 block) instead of O(n_layer).
                x = checkpoint(block, x, cos, sin, spec, use_reentrant=False)
            else:
                x = block(x, cos, sin, spec, cache, i)
        if cache is not None:
            cache.length += T
        return self.ln_f(x)

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T) int64, T <= max_seq_len
        targets: torch.Tensor | None = None,  # (B, T) next-token ids aligned with input_ids; -100 = ignore
        doc_mask: bool = True,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(logits, loss): logits (B, T, V) without targets; with targets, the mean next-token cross
        entropy (fp32 scalar) and logits None, because the fused head + loss never materialises them.

        doc_mask=True treats EOS as a document end: positions restart and attention stays inside each
        document. doc_mask=False is plain causal LM over the whole row (what HF Phi computes).
        """
        if input_ids.shape[1] > self.cfg.max_seq_len:
            raise ValueError(f"sequence length {input_ids.shape[1]} > max_seq_len {self.cfg.max_seq_len}")
        positions, spec = self.attn_spec(input_ids, doc_mask)
        h = self.hidden(input_ids, positions, spec)
        if targets is None:
            return self.lm_head(h), None
        return None, self.lm_head(h, targets)
