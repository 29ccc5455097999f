"""Cut tokenized documents into rows: seeded split and weights, seeded shuffle, exact-length rows, shards.

Everything here depends only on the documents' (source, id) and tokens and on the seed, never on which
worker tokenized what: this is the deterministic half of pack.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Executor
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


Stream = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]


def build_stream(sources: list[TokenizedSource], docs: list[tuple[int, int]]) -> Stream:
    """The split's token stream; per token, the difficulty of the document it belongs to; and, when some
    source has prompts, per token whether it is its document's prompt (None otherwise)."""
    pieces = [sources[si].tokens[sources[si].offsets[di]:sources[si].offsets[di + 1]] for si, di in docs]
    if not pieces:
        return np.zeros(0, np.int32), np.zeros(0, np.float32), None
    lengths = [len(p) for p in pieces]
    per_token = np.repeat(np.array([sources[si].difficulty[di] for si, di in docs], dtype=np.float32), lengths)
    prompt = None
    if any(s.prompt_tokens is not None for s in sources):
        n_prompt = np.array([sources[si].prompt_tokens[di] if sources[si].prompt_tokens is not None else 0
                             for si, di in docs], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        position = np.arange(sum(lengths)) - np.repeat(starts, lengths)  # index of the token in its document
        prompt = position < np.repeat(n_prompt, lengths)
    return np.concatenate(pieces), per_token, prompt


def write_split(out: StageOutput, split: str, stream: Stream, cfg: PackConfig,
                on_shard: Callable[[], None] | None = None, pool: Executor | None = None) -> dict[str, Any]:
    """Rows of exactly `seq_len` tokens (the tail that fills no row is `remainder_tokens`), in shards of
    `rows_per_shard`. Each row's difficulty is the token-weighted mean of its documents' difficulty; with
    prompts, each row also gets its prompt mask (written only then, so other shards are as before).

    With `pool`, shards are written concurrently (Parquet encoding, zstd and hashing release the GIL);
    each shard's bytes depend only on its rows, so they are the same as one after another."""
    tokens, per_token, prompt = stream
    n_rows = len(tokens) // cfg.seq_len
    rows = tokens[: n_rows * cfg.seq_len].reshape(n_rows, cfg.seq_len)
    mask = prompt[: n_rows * cfg.seq_len].reshape(n_rows, cfg.seq_len) if prompt is not None else None
    difficulty = per_token[: n_rows * cfg.seq_len].reshape(n_rows, cfg.seq_len).mean(axis=1, dtype=np.float64)

    def write(index: int, start: int) -> str:
        name = shard_name(split, index)
        with out.open_local(name) as local:
            part = slice(start, start + cfg.rows_per_shard)
            write_shard(local, rows[part], difficulty[part], mask[part] if mask is not None else None)
        return name

    starts = list(enumerate(range(0, n_rows, cfg.rows_per_shard)))
    if pool is None:
        done = (write(i, start) for i, start in starts)
    else:
        done = (f.result() for f in [pool.submit(write, i, start) for i, start in starts])
    shards = []
    for name in done:
        shards.append(name)
        if on_shard:
            on_shard()
    info = {"rows": int(n_rows), "tokens": int(n_rows * cfg.seq_len),
            "remainder_tokens": int(len(tokens) - n_rows * cfg.seq_len), "shards": shards}
    if mask is not None:
        info["prompt_tokens"] = int(mask.sum())  # also says: these shards have a prompt_mask column
    return info
