"""Cut tokenized documents into rows: seeded split and weights, seeded shuffle, exact-length rows, shards.

Everything here depends only on the documents' (source, id) and tokens and on the seed, never on which
worker tokenized what: this is the deterministic half of pack.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

import numpy as np

from primer.settings.pack import PackConfig
from primer.shards import shard_name, write_shard
from primer.store import StageOutput
from tasks.pack.encode import TokenizedSource


def unit_hash(*parts: Any) -> float:
    """A seeded, platform-independent uniform number in [0, 1) from its parts."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64


def plan_splits(sources: list[TokenizedSource], cfg: PackConfig) -> dict[str, list[tuple[int, int]]]:
    """(source index, document index) lists per split: weighted copies, then a seeded shuffle.

    A document's split is a seeded hash of (source, id), so it never straddles the splits; `weight` gives
    its copies (the integer part always, the fraction by another seeded hash)."""
    plan: dict[str, list[tuple[int, int]]] = {"train": [], "val": []}
    for si, ts in enumerate(sources):
        whole, frac = divmod(ts.source.spec.weight, 1.0)
        for di, doc_id in enumerate(ts.ids):
            split = "val" if unit_hash(cfg.seed, "split", ts.source.name, doc_id) < cfg.val_fraction else "train"
            copies = int(whole) + (1 if frac and unit_hash(cfg.seed, "weight", ts.source.name, doc_id) < frac else 0)
            plan[split].extend([(si, di)] * copies)
    for i, split in enumerate(("train", "val")):
        order = np.random.default_rng([cfg.seed, i]).permutation(len(plan[split]))
        plan[split] = [plan[split][j] for j in order]
    return plan


def build_stream(sources: list[TokenizedSource], docs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """The split's token stream and, per token, the difficulty of the document it belongs to."""
    pieces = [sources[si].tokens[sources[si].offsets[di]:sources[si].offsets[di + 1]] for si, di in docs]
    if not pieces:
        return np.zeros(0, np.int32), np.zeros(0, np.float32)
    per_token = np.repeat(np.array([sources[si].difficulty[di] for si, di in docs], dtype=np.float32),
                          [len(p) for p in pieces])
    return np.concatenate(pieces), per_token


def write_split(out: StageOutput, split: str, stream: tuple[np.ndarray, np.ndarray], cfg: PackConfig,
                on_shard: Callable[[], None] | None = None) -> dict[str, Any]:
    """Rows of exactly `seq_len` tokens (the tail that fills no row is `remainder_tokens`), in shards of
    `rows_per_shard`. Each row's difficulty is the token-weighted mean of its documents' difficulty."""
    tokens, per_token = stream
    n_rows = len(tokens) // cfg.seq_len
    rows = tokens[: n_rows * cfg.seq_len].reshape(n_rows, cfg.seq_len)
    difficulty = per_token[: n_rows * cfg.seq_len].reshape(n_rows, cfg.seq_len).mean(axis=1, dtype=np.float64)
    shards = []
    for index, start in enumerate(range(0, n_rows, cfg.rows_per_shard)):
        name = shard_name(split, index)
        with out.open_local(name) as local:
            write_shard(local, rows[start:start + cfg.rows_per_shard], difficulty[start:start + cfg.rows_per_shard])
        shards.append(name)
        if on_shard:
            on_shard()
    return {"rows": int(n_rows), "tokens": int(n_rows * cfg.seq_len),
            "remainder_tokens": int(len(tokens) - n_rows * cfg.seq_len), "shards": shards}
