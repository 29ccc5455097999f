"""Pack's output: its content key, the reuse check, and writing rows + manifest through `StageOutput`.

The steps, each deterministic given the seed:

1. tokenize every document shard by shard (encode.py, `Tokenizer.encode_batch_fast`), append EOS, drop
   documents over `max_doc_bytes` / `max_doc_tokens` (counted, reasons `too_large` / `too_long`);
2. assign each document to train or validation and give it `weight` copies (rows.py);
3. shuffle each split's document list with the seed, concatenate, cut into rows of `seq_len` (the tail
   that does not fill a row is reported as `remainder_tokens`), and write shards of `rows_per_shard` rows.

Each row also gets a `difficulty`: the token-weighted mean, over the documents in the row, of each
document's token entropy (bits per token of its own unigram distribution: repetitive, boilerplate-heavy
code scores low, dense varied code high). Training can order rows by it (`data_order: curriculum`).

Rows are never shuffled after cutting: concatenating a split's rows in order and splitting on EOS gives back
the split's documents. Training shuffles rows itself.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any, Callable

from tokenizers import Tokenizer

from primer.documents import DropCounter
from primer.errors import PrimerError
from primer.settings.pack import PackConfig
from primer.store import ArtifactStore, content_key
from primer.tokenizer import TokenizerRef
from tasks.pack.encode import TokenizedSource, tokenize_shard, tokenize_sources
from tasks.pack.rows import build_stream, plan_splits, write_split
from tasks.sources import ResolvedSource

# 2: per-row difficulty column. 3: documents over max_doc_bytes dropped; the key names sources by
# fingerprint only (stage outputs by their manifest's file hashes), the tokenizer by its content sha256.
PACK_VERSION = 3
# Settings that change how the work is cut into units, not the bytes written: never part of the key.
_NOT_IN_KEY = ("sources", "batch_docs", "shard_bytes", "word_cache")
log = logging.getLogger("primer.pack")


class EmptyPackResult(PrimerError):
    """No training row could be cut: nothing to hand to training."""


def default_threads() -> int:
    return min(4, os.cpu_count() or 1)


def pack_key(cfg: PackConfig, tok: TokenizerRef, sources: list[ResolvedSource]) -> str:
    """Content key of a pack output: what changes the bytes of the shards, and nothing else — the
    tokenizer's content sha256 (never its URI), each source's content fingerprint, name and weight."""
    settings = {k: v for k, v in asdict(cfg).items() if k not in _NOT_IN_KEY}
    inputs = [(s.name, s.fingerprint, s.spec.weight) for s in sources]
    return content_key(PACK_VERSION, settings, tok.sha256, inputs)


def find_output(store: ArtifactStore, cfg: PackConfig, tok: TokenizerRef,
                sources: list[ResolvedSource]) -> dict[str, Any] | None:
    """The finished output for these inputs (manifest, `reused: True`), or None after clearing the
    leftovers of an interrupted attempt."""
    out = store.output("pack", pack_key(cfg, tok, sources))
    if out.is_complete():
        manifest = store.read_output(out.uri, "pack").manifest
        log.info("reusing token shards %s (%s rows)", out.uri, manifest["splits"]["train"]["rows"])
        return {**manifest, "uri": out.uri, "reused": True}
    removed = out.clean_partial()
    if removed:
        log.warning("removed %d leftovers of an interrupted pack at %s", removed, out.uri)
    return None


def all_drops(tokenized: list[TokenizedSource]) -> DropCounter:
    drops = DropCounter()
    for ts in tokenized:
        for d in ts.drops.all:
            drops.add(d)
    return drops


def require_rows(tokenized: list[TokenizedSource], n_train_tokens: int, cfg: PackConfig) -> None:
    """Fail, with the drop counts, when the sources give no training row at all."""
    if n_train_tokens >= cfg.seq_len:
        return
    drops = all_drops(tokenized)
    docs = sum(ts.n_docs for ts in tokenized)
    shown = ", ".join(f"{r} {n}" for r, n in sorted(drops.counts.items(), key=lambda kv: (-kv[1], kv[0])))
    raise EmptyPackResult(
        f"pack: no training row of {cfg.seq_len} tokens from {docs} kept documents ({n_train_tokens} train "
        f"tokens; dropped: {shown or 'none'}). Check pack.sources, or lower pack.seq_len / pack.val_fraction.")


def source_stats(ts: TokenizedSource, plan: dict[str, list[tuple[int, int]]], si: int) -> dict[str, Any]:
    import numpy as np

    lengths = np.diff(ts.offsets)
    per_split = {split: sum(int(lengths[di]) for s, di in docs if s == si) for split, docs in plan.items()}
    return {
        "name": ts.source.name, "uri": ts.source.spec.uri, "dataset": ts.source.spec.dataset,
        "format": ts.source.format, "fingerprint": ts.source.fingerprint, "weight": ts.source.spec.weight,
        "files": len(ts.source.files), "documents": ts.n_docs, "bytes": ts.bytes, "tokens": int(ts.tokens.size),
        "tokens_weighted": per_split, "dropped": ts.drops.total(), "drops": ts.drops.as_dict(),
    }


def write_output(store: ArtifactStore, cfg: PackConfig, tok: TokenizerRef, sources: list[ResolvedSource],
                 tokenized: list[TokenizedSource], progress: Callable[[float], None] | None = None,
                 timing: dict[str, float] | None = None, threads: int = 0) -> dict[str, Any]:
    """Split, shuffle, cut and write the rows of already tokenized sources (shards on `threads` threads,
    default: up to 4); commit the manifest."""
    t0 = time.perf_counter()
    out = store.output("pack", pack_key(cfg, tok, sources))
    plan = plan_splits(tokenized, cfg)
    streams = {split: build_stream(tokenized, docs) for split, docs in plan.items()}
    require_rows(tokenized, len(streams["train"][0]), cfg)
    n_shards = sum(-(-(len(s[0]) // cfg.seq_len) // cfg.rows_per_shard) for s in streams.values()) or 1
    written = 0

    def on_shard() -> None:
        nonlocal written
        written += 1
        if progress:
            progress(0.5 + 0.5 * written / n_shards)

    with ThreadPoolExecutor(max_workers=threads or default_threads()) as pool:
        splits = {split: {**write_split(out, split, streams[split], cfg, on_shard, pool),
                          "documents": len(plan[split])} for split in ("train", "val")}
    drops = all_drops(tokenized)
    # Anything that points into the store is recorded as a store ref, so a copied store still reads.
    tokenizer = {**asdict(tok), "uri": store.ref(tok.uri)}
    manifest = out.commit({
        "kind": "token_shards",
        "version": PACK_VERSION,
        "config": {k: v for k, v in asdict(cfg).items() if k != "sources"},
        "seq_len": cfg.seq_len,
        "tokenizer": tokenizer,
        "eos_id": tok.eos_id,
        "inputs": [{"name": s.name, "uri": store.ref(s.spec.uri), "dataset": s.spec.dataset,
                    "fingerprint": s.fingerprint} for s in sources],
        "mixture_weights": {s.name: s.spec.weight for s in sources},
        "sources": [{**source_stats(ts, plan, i), "uri": store.ref(ts.source.spec.uri)}
                    for i, ts in enumerate(tokenized)],
        "splits": splits,
        "drops": drops.as_dict(),
        "drop_examples": {r: [vars(d) for d in ex] for r, ex in drops.examples.items()},
        "timing_s": {**(timing or {}), "write": round(time.perf_counter() - t0, 3)},
    })
    if progress:
        progress(1.0)
    return {**manifest, "reused": False}


def pack_documents(store: ArtifactStore, cfg: PackConfig, tokenizer: Tokenizer, tok: TokenizerRef,
                   sources: list[ResolvedSource], tokenized: list[TokenizedSource] | None = None,
                   progress: Callable[[float], None] | None = None, threads: int = 0) -> dict[str, Any]:
    """Write (or reuse) the token shards for `sources` in this process; return the manifest.

    The flow runs the same steps as tasks, tokenizing the shards on its task runner."""
    found = find_output(store, cfg, tok, sources)
    if found is not None:
        return found
    t0 = time.perf_counter()
    if tokenized is None:
        # Shards on a few threads: encode_batch_fast releases the GIL, so one shard's reading and id
        # conversion overlaps another's encoding. Joined in shard order: the same bytes as one thread.
        with ThreadPoolExecutor(max_workers=threads or default_threads()) as pool:
            tokenized = tokenize_sources(sources, tok, cfg, store.cfg, tokenizer, map_fn=lambda plans: list(
                pool.map(lambda p: tokenize_shard(p, tok, cfg, store.cfg, tokenizer), plans)))
    if progress:
        progress(0.5)
    return write_output(store, cfg, tok, sources, tokenized, progress,
                        {"tokenize": round(time.perf_counter() - t0, 3)}, threads)
