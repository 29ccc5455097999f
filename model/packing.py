"""Document structure of packed rows: which document each token is in, and its position inside it.

A training row is seq_len tokens of several documents joined by EOS, where EOS *ends* a document:

    tokens  a a a E b b E c c        (E = eos_token_id)
    doc     0 0 0 0 1 1 1 2 2        a token belongs to the document its most recent preceding EOS closes;
    pos     0 1 2 3 0 1 2 0 1        the EOS itself belongs to the document it ends

Positions restart at every document so that rotary phases are the same wherever a document lands in a
row, and attention is block-diagonal-causal so that no token sees another document. Together these make
a document's logits independent of what was packed before it (tests/model/test_packing.py checks this).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class DocLayout:
    positions: torch.Tensor  # (B, T) int64, position of each token inside its document
    doc_ids: torch.Tensor | None  # (B, T) int64, document index within the row; None when rows are unsplit


def has_boundaries(input_ids: torch.Tensor, eos_token_id: int) -> bool:
    """True when some row holds an EOS before its last token, i.e. some row packs 2+ documents.

    An EOS in the last slot closes the row's only document and splits nothing, so it keeps the fast path.
    On CUDA this is a host sync (one bool); it buys the is_causal / plain-flash fast path.
    """
    return bool((input_ids[:, :-1] == eos_token_id).any())


def doc_layout(input_ids: torch.Tensor, eos_token_id: int, doc_mask: bool = True) -> DocLayout:
    """Positions (and document ids when needed) for a (B, T) batch of token ids."""
    B, T = input_ids.shape
    ar = torch.arange(T, device=input_ids.device)
    if not doc_mask or not has_boundaries(input_ids, eos_token_id):
        return DocLayout(positions=ar.expand(B, T), doc_ids=None)
    is_eos = (input_ids == eos_token_id).long()  # (B, T)
    # Exclusive cumsum: the number of EOS strictly before t = index of t's document.
    doc_ids = is_eos.cumsum(1) - is_eos
    # Start of t's document = 1 + index of the last EOS strictly before t (or 0 when there is none).
    eos_at = torch.where(is_eos.bool(), ar, torch.full_like(ar, -1))  # (B, T)
    last_eos_incl = eos_at.cummax(1).values  # last EOS at or before t
    last_eos_excl = torch.cat([torch.full_like(last_eos_incl[:, :1], -1), last_eos_incl[:, :-1]], dim=1)
    positions = ar - (last_eos_excl + 1)
    return DocLayout(positions=positions, doc_ids=doc_ids)


def block_causal_mask(doc_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) doc ids -> (B, 1, T, T) bool mask for SDPA (True = may attend): same document and causal."""
    T = doc_ids.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=doc_ids.device).tril()
    same_doc = doc_ids[:, :, None] == doc_ids[:, None, :]  # (B, T, T)
    return (same_doc & causal)[:, None]


def cu_seqlens(positions: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Document boundaries of the flattened (B*T) batch, for flash_attn_varlen_func.

    Every document starts where its position is 0 (each row starts a document too), so the starts are
    the indices of the zeros; the last boundary is B*T. Returns (int32 cu_seqlens, max document length).
    """
    flat = positions.reshape(-1)
    starts = torch.nonzero(flat == 0).flatten()
    cu = torch.cat([starts, starts.new_tensor([flat.numel()])]).to(torch.int32)
    return cu, int((cu[1:] - cu[:-1]).max())
