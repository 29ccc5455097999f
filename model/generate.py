"""Batched autoregressive generation with a KV cache: greedy or temperature/top-p sampling, per-row stops.

Batching design: prompts are LEFT-padded to a common length P, so every row's next token is written
at the same cache slot and one KV cache length serves the batch. Padding is hidden by a key-validity
mask, and each row's positions count from its own first real token (pos = slot - pad_r), so a row
generates exactly what it would alone. Prompts are treated as one document (no EOS masking).

Stopping is per row, checked after each new token, in this order:
  - eos_token_id generated          -> finish_reason "eos"   (the EOS is NOT included in tokens)
  - a token-id stop sequence ends the generated tokens       -> "stop" (stop tokens included)
  - a string stop appears in decode(generated tokens)        -> "stop" (tokens kept; the caller
    truncates the text at `stop`, since a string can end inside a token)
  - max_new_tokens reached                                   -> "length"
Finished rows keep riding along in the batch (their outputs are ignored) until all rows finish.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .attention import AttnSpec, KVCache
from .phi import PhiLM


@dataclass
class Generation:
    tokens: list[int]  # generated ids only (no prompt)
    finish_reason: str  # "eos" | "stop" | "length"
    stop: Sequence[int] | str | None = None  # the stop that matched, when finish_reason == "stop"


def _sample(logits: torch.Tensor, temperature: float, top_p: float, generator) -> torch.Tensor:
    """(B, V) fp32 logits -> (B,) next ids. temperature <= 0 means greedy."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, idx = probs.sort(dim=-1, descending=True)
        # Drop a token when the mass strictly before it already reaches top_p (the top token always stays).
        drop = (sorted_p.cumsum(-1) - sorted_p) >= top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, idx, sorted_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _attn_mask(valid: torch.Tensor, q_start: int, q_len: int) -> torch.Tensor:
    """(B, K) key validity -> (B, 1, q_len, K) bool mask: causal, real keys only, plus each query's own slot
    (keeps fully padded query rows from being all-masked, which would give NaN; their output is unused)."""
    K = valid.shape[1]
    q_idx = torch.arange(q_start, q_start + q_len, device=valid.device)[:, None]
    k_idx = torch.arange(K, device=valid.device)[None, :]
    causal = k_idx <= q_idx  # (q_len, K)
    return ((causal & valid[:, None, :]) | (k_idx == q_idx))[:, None]


@torch.no_grad()
def generate(
    model: PhiLM,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int = 256,
    *,
    temperature: float = 0.0,
    top_p: float = 1.0,
    stop: Sequence[Sequence[int] | str] = (),
    decode: Callable[[list[int]], str] | None = None,
    eos_token_id: int | None = -1,  # -1: use model.cfg.eos_token_id; None: never stop on EOS
    use_cache: bool = True,
    generator: torch.Generator | None = None,
) -> list[Generation]:
    """Generate a continuation for each prompt (lists of token ids). Returns one Generation per prompt."""
    cfg = model.cfg
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("prompts must be non-empty lists of token ids")
    if eos_token_id == -1:
        eos_token_id = cfg.eos_token_id
    tok_stops = [list(s) for s in stop if not isinstance(s, str)]
    str_stops = [s for s in stop if isinstance(s, str)]
    if str_stops and decode is None:
        raise ValueError("string stop sequences need a decode callback")
    B, P = len(prompts), max(len(p) for p in prompts)
    total = P + max_new_tokens
    if total > cfg.max_seq_len:
        raise ValueError(f"longest prompt ({P}) + max_new_tokens ({max_new_tokens}) > max_seq_len ({cfg.max_seq_len})")

    device = model.embed.weight.device
    was_training = model.training
    model.eval()
    ids = torch.zeros(B, total, dtype=torch.long, device=device)  # left-padded prompt, then generated
    valid = torch.zeros(B, total, dtype=torch.bool, device=device)  # real (non-pad) slots
    pad = torch.tensor([P - len(p) for p in prompts], device=device)  # (B,)
    for r, p in enumerate(prompts):
        ids[r, P - len(p):P] = torch.tensor(list(p), dtype=torch.long)
        valid[r, P - len(p):P] = True
    slots = torch.arange(total, device=device)
    positions = (slots[None, :] - pad[:, None]).clamp(min=0)  # (B, total)
    cache = (
        KVCache(cfg.n_layer, B, total, cfg.n_head, cfg.head_dim, device, model.embed.weight.dtype)
        if use_cache else None
    )

    out: list[list[int]] = [[] for _ in range(B)]
    results: list[Generation | None] = [None] * B
    T = P  # filled length of ids
    try:
        for step in range(max_new_tokens):
            if cache is None or step == 0:
                q0 = 0  # (re)run the whole sequence
            else:
                q0 = T - 1  # only the newest token; earlier keys/values are cached
            spec = AttnSpec(causal=False, mask=_attn_mask(valid[:, :T], q0, T - q0))
            h = model.hidden(ids[:, q0:T], positions[:, q0:T], spec, cache)  # (B, T - q0, C)
            logits = model.lm_head(h[:, -1]).float()  # (B, V)
            nxt = _sample(logits, temperature, top_p, generator)  # (B,)
            ids[:, T] = nxt
            valid[:, T] = True
            T += 1
            for r, t in enumerate(nxt.tolist()):
                if results[r] is not None:
                    continue
                if eos_token_id is not None and t == eos_token_id:
                    results[r] = Generation(out[r], "eos")
                    continue
                out[r].append(t)
                hit = next((s for s in tok_stops if s and out[r][-len(s):] == s), None)
                if hit is None and str_stops:
                    text = decode(out[r])
                    hit = next((s for s in str_stops if s in text), None)
                if hit is not None:
                    results[r] = Generation(out[r], "stop", hit)
                elif len(out[r]) >= max_new_tokens:
                    results[r] = Generation(out[r], "length")
            if all(g is not None for g in results):
                break
    finally:
        model.train(was_training)
    return [g if g is not None else Generation(out[r], "length") for r, g in enumerate(results)]
