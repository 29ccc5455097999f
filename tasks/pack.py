"""Pack documents into EOS-delimited rows of exactly `seq_len` tokens, written as Parquet shards.

The steps, each deterministic given the seed:

1. tokenize every document (in batches, `Tokenizer.encode_batch_fast`), append EOS, drop documents over
   `max_doc_tokens` (counted, reason `too_long`);
2. assign each document to train or validation by a seeded hash of (source, id) — a document never straddles
   the splits — and give it `weight` copies (the integer part always, the fraction by a seeded hash);
3. shuffle each split's document list with the seed, concatenate, cut into rows of `seq_len` (the tail that
   does not fill a row is reported as `remainder_tokens`), and write shards of `rows_per_shard` rows.

Each row also gets a `difficulty`: the token-weighted mean, over the documents in the row, of each
document's token entropy (bits per token of its own unigram distribution: repetitive, boilerplate-heavy
code scores low, dense varied code high). Training can order rows by it (`data_order: curriculum`).

Rows are never shuffled after cutting: concatenating a split's rows in order and splitting on EOS gives back
the split's documents. Training shuffles rows itself.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
from tokenizers import Tokenizer

from primer.documents import Drop, DropCounter
from primer.settings.pack import PackConfig
from primer.shards import shard_name, write_shard
from primer.store import ArtifactStore, StageOutput, content_key
from tasks.sources import ResolvedSource, read_documents
from tasks.tokenizer import TokenizerRef

PACK_VERSION = 2  # 2: per-row difficulty column
log = logging.getLogger("primer.pack")


@dataclass
class TokenizedSource:
    """All documents of one source as one flat token array (EOS after each document) plus offsets."""

    source: ResolvedSource
    ids: list[str] = field(default_factory=list)
    tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))  # doc i = tokens[off[i]:off[i+1]]
    difficulty: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # per document
    drops: DropCounter = field(default_factory=DropCounter)
    bytes: int = 0

    @property
    def n_docs(self) -> int:
        return len(self.ids)


def unit_hash(*parts: Any) -> float:
    """A seeded, platform-independent uniform number in [0, 1) from its parts."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64


def pack_key(cfg: PackConfig, tok: TokenizerRef, sources: list[ResolvedSource]) -> str:
    """Content key of a pack output: what changes the bytes of the shards, and nothing else."""
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("sources", "batch_docs")}
    inputs = [(s.name, s.fingerprint, s.spec.weight) for s in sources]
    return content_key(PACK_VERSION, settings, tok.sha256, inputs)


def tokenize_source(src: ResolvedSource, tokenizer: Tokenizer, eos_id: int, cfg: PackConfig,
                    store_cfg=None, on_batch: Callable[[int], None] | None = None) -> TokenizedSource:
    """Read and tokenize one source in batches of `cfg.batch_docs` documents."""
    out = TokenizedSource(source=src)
    chunks: list[np.ndarray] = []
    lengths: list[int] = []
    batch_ids: list[str] = []
    batch_texts: list[str] = []
    # A document that contains the literal EOS string must not be cut in two: special tokens inside the
    # text are encoded as ordinary text, so EOS in a row only ever marks a real document boundary.
    tokenizer.encode_special_tokens = True

    def flush() -> None:
        if not batch_texts:
            return
        encodings = tokenizer.encode_batch_fast(batch_texts)
        for doc_id, enc in zip(batch_ids, encodings):
            ids = enc.ids
            n = len(ids) + 1
            if cfg.max_doc_tokens and n > cfg.max_doc_tokens:
                out.drops.add(Drop(doc_id, src.name, "too_long", f"{n} tokens > pack.max_doc_tokens={cfg.max_doc_tokens}"))
                continue
            ids.append(eos_id)
            chunks.append(np.array(ids, dtype=np.int32))
            lengths.append(n)
            out.ids.append(doc_id)
        if on_batch:
            on_batch(len(batch_texts))
        batch_ids.clear()
        batch_texts.clear()

    for doc in read_documents(src, out.drops, store_cfg):
        out.bytes += len(doc.text)
        batch_ids.append(doc.id)
        batch_texts.append(doc.text)
        if len(batch_texts) >= cfg.batch_docs:
            flush()
    flush()
    out.tokens = np.concatenate(chunks) if chunks else np.zeros(0, np.int32)
    out.offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
    out.difficulty = np.array([token_entropy(c) for c in chunks], dtype=np.float32)
    return out


def token_entropy(ids: np.ndarray) -> float:
    """Bits per token of a document's own unigram distribution (its difficulty measure)."""
    _, counts = np.unique(ids, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def plan_splits(sources: list[TokenizedSource], cfg: PackConfig) -> dict[str, list[tuple[int, int]]]:
    """(source index, document index) lists per split: weighted copies, then a seeded shuffle."""
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


def source_stats(ts: TokenizedSource, plan: dict[str, list[tuple[int, int]]], si: int) -> dict[str, Any]:
    lengths = np.diff(ts.offsets)
    per_split = {split: sum(int(lengths[di]) for s, di in docs if s == si) for split, docs in plan.items()}
    return {
        "name": ts.source.name, "uri": ts.source.spec.uri, "format": ts.source.format,
        "fingerprint": ts.source.fingerprint, "weight": ts.source.spec.weight, "files": len(ts.source.files),
        "documents": ts.n_docs, "bytes": ts.bytes, "tokens": int(ts.tokens.size),
        "tokens_weighted": per_split, "dropped": ts.drops.total(), "drops": ts.drops.as_dict(),
    }


def pack_documents(store: ArtifactStore, cfg: PackConfig, tokenizer: Tokenizer, tok: TokenizerRef,
                   sources: list[ResolvedSource], tokenized: list[TokenizedSource] | None = None,
                   progress: Callable[[float], None] | None = None) -> dict[str, Any]:
    """Write (or reuse) the token shards for `sources`; return the manifest."""
    out = store.output("pack", pack_key(cfg, tok, sources))
    if out.is_complete():
        manifest = out.read_manifest()
        log.info("reusing token shards %s (%s rows)", out.uri, manifest["splits"]["train"]["rows"])
        return {**manifest, "reused": True}
    removed = out.clean_partial()
    if removed:
        log.warning("removed %d leftovers of an interrupted pack at %s", removed, out.uri)
    t0 = time.perf_counter()
    if tokenized is None:
        tokenized = []
        for i, src in enumerate(sources):
            seen = 0

            def on_batch(n: int, i: int = i, src: ResolvedSource = src) -> None:
                nonlocal seen
                seen += n  # documents ~ files for folders; a coarse but monotone estimate for datasets
                if progress:
                    progress(0.5 * (i + min(1.0, seen / max(1, len(src.files)))) / len(sources))

            tokenized.append(tokenize_source(src, tokenizer, tok.eos_id, cfg, store.cfg, on_batch))
    t_tok = time.perf_counter() - t0
    plan = plan_splits(tokenized, cfg)
    streams = {split: build_stream(tokenized, docs) for split, docs in plan.items()}
    n_shards = sum(-(-(len(s[0]) // cfg.seq_len) // cfg.rows_per_shard) for s in streams.values()) or 1
    written = 0

    def on_shard() -> None:
        nonlocal written
        written += 1
        if progress:
            progress(0.5 + 0.5 * written / n_shards)

    splits = {split: {**write_split(out, split, streams[split], cfg, on_shard), "documents": len(plan[split])}
              for split in ("train", "val")}
    drops = DropCounter()
    for ts in tokenized:
        for d in ts.drops.all:
            drops.add(d)
    manifest = out.commit({
        "kind": "token_shards",
        "version": PACK_VERSION,
        "config": {k: v for k, v in asdict(cfg).items() if k != "sources"},
        "seq_len": cfg.seq_len,
        "tokenizer": asdict(tok),
        "eos_id": tok.eos_id,
        "inputs": [{"name": s.name, "uri": s.spec.uri, "fingerprint": s.fingerprint} for s in sources],
        "mixture_weights": {s.name: s.spec.weight for s in sources},
        "sources": [source_stats(ts, plan, i) for i, ts in enumerate(tokenized)],
        "splits": splits,
        "drops": drops.as_dict(),
        "drop_examples": {r: [vars(d) for d in ex] for r, ex in drops.examples.items()},
        "timing_s": {"tokenize": round(t_tok, 3), "total": round(time.perf_counter() - t0, 3)},
    })
    if progress:
        progress(1.0)
    return {**manifest, "reused": False}
