"""Tokenize documents shard by shard: the unit pack maps on its task runner.

A *shard* is a slice of one source's files (a group of source files, or one Parquet/JSONL file). Each is
read and tokenized on its own (`tokenize_shard`), anywhere: a thread, a process, a Dask worker. The shards
of a source are then joined in shard order (`join_shards`), so the result is the same token stream as one
sequential pass, whatever ran the shards and in whatever order they finished.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from primer.documents import Drop, DropCounter
from primer.settings.pack import PackConfig
from primer.settings.store import StoreConfig
from primer.store import filesystem_for
from primer.tokenizer import TokenizerRef
from tasks.pack.word_cache import encode_documents, wanted as word_cache_wanted
from tasks.sources import ResolvedSource, read_documents


@dataclass
class ShardPlan:
    """One tokenization unit: source `source_index`, shard `index` of it, holding `source.files`."""

    source_index: int
    index: int
    source: ResolvedSource


@dataclass
class TokenizedSource:
    """Documents of one source (or one shard of it) as one flat token array (EOS after each) plus offsets."""

    source: ResolvedSource
    ids: list[str] = field(default_factory=list)
    tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))  # doc i = tokens[off[i]:off[i+1]]
    difficulty: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # per document
    # Per document, how many of its first tokens are its prompt (source.spec.prompt_column); None: no prompts.
    prompt_tokens: np.ndarray | None = None
    drops: DropCounter = field(default_factory=DropCounter)
    bytes: int = 0

    @property
    def n_docs(self) -> int:
        return len(self.ids)


def plan_shards(sources: list[ResolvedSource], cfg: PackConfig, store_cfg: StoreConfig | None = None
                ) -> list[ShardPlan]:
    """Cut each source into shards: one per Parquet/JSONL file; source files grouped up to `cfg.shard_bytes`.

    Depends only on the file list and sizes, so every runner gets the same shards."""
    plans: list[ShardPlan] = []
    for si, src in enumerate(sources):
        if src.format != "dir":
            groups = [[f] for f in src.files]
        else:
            fs = filesystem_for(src.base if src.protocol == "file" else f"{src.protocol}://{src.base}", store_cfg)[0]
            groups, size = [[]], 0
            for f in src.files:
                n = int(fs.size(f) or 0)
                if groups[-1] and size + n > cfg.shard_bytes:
                    groups.append([])
                    size = 0
                groups[-1].append(f)
                size += n
        for i, files in enumerate(groups):
            plans.append(ShardPlan(si, i, dataclasses.replace(src, files=files)))
    return plans


_LOADED: dict[tuple[str, str], Tokenizer] = {}


def _tokenizer(store_cfg: StoreConfig, tok: TokenizerRef) -> Tokenizer:
    """One loaded tokenizer per worker process and tokenizer content (its sha256), not one per shard."""
    from primer.store import open_store
    from primer.tokenizer import load_tokenizer

    key = (tok.sha256, tok.uri)
    if key not in _LOADED:
        if len(_LOADED) >= 4:
            _LOADED.clear()
        _LOADED[key] = load_tokenizer(open_store(store_cfg), tok.uri, tok.eos_token)[0]
    return _LOADED[key]


def tokenize_shard(plan: ShardPlan, tok: TokenizerRef, cfg: PackConfig, store_cfg: StoreConfig,
                   tokenizer: Tokenizer | None = None) -> TokenizedSource:
    """Read and tokenize one shard in batches of `cfg.batch_docs` documents.

    Documents over `max_doc_bytes` are dropped before encoding (reason too_large), over `max_doc_tokens`
    after (too_long)."""
    if tokenizer is None:
        tokenizer = _tokenizer(store_cfg, tok)
    src = plan.source
    out = TokenizedSource(source=src)
    use_cache = word_cache_wanted(cfg.word_cache)
    # Per batch of kept documents: their ids with an EOS after each (one int32 array), their lengths
    # (EOS included) and their token entropy; joined once at the end.
    pieces: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    entropy: list[np.ndarray] = []
    prompt_lengths: list[int] = []
    batch_ids: list[str] = []
    batch_texts: list[str] = []
    batch_prompts: list[str | None] = []

    def flush() -> None:
        if not batch_texts:
            return
        # EOS's text inside a document is ordinary text (encode_special_tokens), so EOS in a row only ever
        # marks a real document boundary. Pieces' ids come from a cache where that is exact (word_cache.py).
        tokens, n = encode_documents(tokenizer, batch_texts, tok.eos_token, tok.eos_id, use_cache)
        prompts = prompt_ids(tokenizer, batch_prompts) if src.spec.prompt_column else None
        kept = np.arange(len(n))
        if cfg.max_doc_tokens and n.max() > cfg.max_doc_tokens:
            for i in np.flatnonzero(n > cfg.max_doc_tokens):
                out.drops.add(Drop(batch_ids[i], src.name, "too_long",
                                   f"{n[i]} tokens > pack.max_doc_tokens={cfg.max_doc_tokens}"))
            kept = np.flatnonzero(n <= cfg.max_doc_tokens)
            tokens = tokens[np.repeat(n <= cfg.max_doc_tokens, n)]
            n = n[kept]
        offsets = np.concatenate([[0], np.cumsum(n)])
        pieces.append(tokens)
        lengths.append(n)
        entropy.append(token_entropy(tokens, offsets))
        out.ids.extend(batch_ids[i] for i in kept)
        if prompts is not None:
            prompt_lengths.extend(common_prefix(prompts[i], tokens[offsets[j]:offsets[j + 1] - 1])
                                  for j, i in enumerate(kept))
        batch_ids.clear()
        batch_texts.clear()
        batch_prompts.clear()

    for doc in read_documents(src, out.drops, store_cfg):
        if too_large(doc.text, cfg.max_doc_bytes):
            out.drops.add(Drop(doc.id, src.name, "too_large", too_large_detail(doc.text, cfg.max_doc_bytes)))
            continue
        out.bytes += len(doc.text)
        batch_ids.append(doc.id)
        batch_texts.append(doc.text)
        batch_prompts.append(doc.meta.get("prompt"))
        if len(batch_texts) >= cfg.batch_docs:
            flush()
    flush()
    if pieces:
        out.tokens = np.concatenate(pieces)
        out.offsets = np.concatenate([[0], np.cumsum(np.concatenate(lengths), dtype=np.int64)])
        out.difficulty = np.concatenate(entropy)
    if src.spec.prompt_column:
        out.prompt_tokens = np.array(prompt_lengths, dtype=np.int64)
    return out


def prompt_ids(tokenizer: Tokenizer, prompts: list[str | None]) -> list[list[int]]:
    """Each prompt's token ids ([] for a document without one), encoded as its document is."""
    given = [i for i, p in enumerate(prompts) if p]
    ids: list[list[int]] = [[] for _ in prompts]
    for i, enc in zip(given, tokenizer.encode_batch_fast([prompts[i] for i in given])):
        ids[i] = enc.ids
    return ids


def common_prefix(prompt: list[int], ids: list[int] | np.ndarray) -> int:
    """Tokens of the document that are its prompt's: the longest common prefix of the two encodings (a token
    straddling the prompt/solution boundary holds solution text, so it is not prompt)."""
    m = min(len(prompt), len(ids))
    differ = np.flatnonzero(np.asarray(prompt[:m]) != np.asarray(ids[:m]))
    return int(differ[0]) if differ.size else m


def too_large(text: str, limit: int) -> bool:
    """More than `limit` UTF-8 bytes (0 = no limit); encodes only texts that may be (chars <= bytes <= 4 chars)."""
    return bool(limit) and len(text) * 4 > limit and (len(text) > limit or len(text.encode("utf-8")) > limit)


def too_large_detail(text: str, limit: int) -> str:
    return f"{len(text.encode('utf-8'))} bytes > pack.max_doc_bytes={limit}"


def token_entropy(tokens: np.ndarray, offsets: np.ndarray, max_bins: int = 1 << 21) -> np.ndarray:
    """Per document, bits per token of its own unigram distribution (its difficulty measure).

    Counts (document, token) pairs with one `bincount` per group of documents (at most `max_bins`
    document x token cells, so memory stays bounded whatever the vocabulary), not one sort of every pair:
    a document's terms are still summed in token order, so the values are the same as a sort's."""
    n_docs = len(offsets) - 1
    if n_docs == 0:
        return np.zeros(0, np.float32)
    lengths = np.diff(offsets)
    width = int(tokens.max()) + 1 if tokens.size else 1
    per_group = max(1, max_bins // width)
    out = np.zeros(n_docs, np.float64)
    for first in range(0, n_docs, per_group):
        last = min(n_docs, first + per_group)
        part = tokens[offsets[first]:offsets[last]].astype(np.int64)
        part += np.repeat(np.arange(last - first, dtype=np.int64) * width, lengths[first:last])
        counts = np.bincount(part, minlength=(last - first) * width)
        pairs = np.flatnonzero(counts)
        owner = pairs // width
        p = counts[pairs] / lengths[first:last][owner]
        out[first:last] = np.bincount(owner, weights=-(p * np.log2(p)), minlength=last - first)
    return out.astype(np.float32)


def join_shards(sources: list[ResolvedSource], parts: list[TokenizedSource], plans: list[ShardPlan]
                ) -> list[TokenizedSource]:
    """One TokenizedSource per source from its shards, joined in shard order (not completion order)."""
    by_source: dict[int, list[tuple[int, TokenizedSource]]] = {i: [] for i in range(len(sources))}
    for plan, part in zip(plans, parts):
        by_source[plan.source_index].append((plan.index, part))
    joined = []
    for si, src in enumerate(sources):
        shards = [p for _, p in sorted(by_source[si], key=lambda t: t[0])]
        out = TokenizedSource(source=src)
        for p in shards:
            out.ids.extend(p.ids)
            for d in p.drops.all:
                out.drops.add(d)
            out.bytes += p.bytes
        out.tokens = np.concatenate([p.tokens for p in shards]) if shards else np.zeros(0, np.int32)
        lengths = np.concatenate([np.diff(p.offsets) for p in shards]) if shards else np.zeros(0, np.int64)
        out.offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
        out.difficulty = (np.concatenate([p.difficulty for p in shards]) if shards
                          else np.zeros(0, np.float32))
        if any(p.prompt_tokens is not None for p in shards):
            out.prompt_tokens = np.concatenate([np.zeros(0, np.int64)] + [
                p.prompt_tokens if p.prompt_tokens is not None else np.zeros(p.n_docs, np.int64) for p in shards])
        joined.append(out)
    return joined


def tokenize_sources(sources: list[ResolvedSource], tok: TokenizerRef, cfg: PackConfig,
                     store_cfg: StoreConfig | None, tokenizer: Tokenizer | None = None,
                     map_fn: Any = None) -> list[TokenizedSource]:
    """Every source tokenized: shards planned, tokenized (through `map_fn(plans)` when given, e.g. a
    Prefect task's `.map`; else one after another here), and joined in order."""
    plans = plan_shards(sources, cfg, store_cfg)
    if map_fn is not None:
        parts = map_fn(plans)
    else:
        parts = [tokenize_shard(p, tok, cfg, store_cfg, tokenizer) for p in plans]
    return join_shards(sources, parts, plans)
