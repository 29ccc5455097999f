"""Train a byte-level BPE tokenizer (Hugging Face `tokenizers`) for pack; loading one is primer/tokenizer.py.

A trained tokenizer is itself a content-addressed output (`tokenizer/<key>/tokenizer.json`): the same
sources, seed and settings reuse it; the pack manifest records its sha256.
"""

from __future__ import annotations

import logging
import random
from dataclasses import asdict
from typing import Callable, Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from primer.documents import Drop, DropCounter
from primer.errors import InputError
from primer.settings.pack import TokenizerConfig
from primer.store import ArtifactStore, content_key
from primer.tokenizer import TokenizerRef, load_tokenizer, tokenizer_ref  # noqa: F401 (re-exported)

TOKENIZER_VERSION = 1
log = logging.getLogger("primer.tokenizer")


def build_trainer_tokenizer(cfg: TokenizerConfig) -> tuple[Tokenizer, trainers.BpeTrainer]:
    tok = Tokenizer(models.BPE())
    # Byte-level: every string is encodable (no unknown token), and decode(encode(x)) == x.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=[cfg.eos_token],  # id 0
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    return tok, trainer


def sample_texts(texts: list[str], max_bytes: int, seed: int, drops: DropCounter | None = None) -> list[str]:
    """A seeded sample of documents totalling at most `max_bytes`. A document larger than the whole
    budget is never picked (counted in `drops` as `too_large_for_tokenizer`): one 60 MB file must not
    become the tokenizer's training set."""
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    picked, used = [], 0
    for i in order:
        size = len(texts[i].encode("utf-8", "ignore"))
        if size > max_bytes:
            if drops is not None:
                drops.add(Drop(f"#{i}", "", "too_large_for_tokenizer",
                               f"{size} bytes > tokenizer.train_max_bytes={max_bytes}"))
            continue
        if used + size > max_bytes:
            continue
        picked.append(texts[i])
        used += size
    return picked


def train_tokenizer(texts: Iterable[str], cfg: TokenizerConfig) -> Tokenizer:
    texts = list(texts)
    tok, trainer = build_trainer_tokenizer(cfg)
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tok


def prepare_tokenizer(store: ArtifactStore, cfg: TokenizerConfig, texts: Callable[[], list[str]],
                      input_hashes: list[str], seed: int,
                      drops: DropCounter | None = None) -> tuple[Tokenizer, TokenizerRef]:
    """Load `cfg.uri`, or train on a seeded sample of `texts()` and store it (reused when inputs match).
    `drops` holds what reading the texts dropped: with no document left, the error shows its counts."""
    if cfg.uri:
        return load_tokenizer(store, cfg.uri, cfg.eos_token)
    settings = {k: v for k, v in asdict(cfg).items() if k != "uri"}
    out = store.output("tokenizer", content_key(TOKENIZER_VERSION, settings, sorted(input_hashes), seed))
    if out.is_complete():
        tok, ref = load_tokenizer(store, out.file_uri("tokenizer.json"), cfg.eos_token)
        log.info("reusing tokenizer %s", out.uri)
        return tok, TokenizerRef(**{**asdict(ref), "trained": True})
    out.clean_partial()
    drops = drops if drops is not None else DropCounter()
    sample = sample_texts(texts(), cfg.train_max_bytes, seed, drops)
    if not sample:
        shown = ", ".join(f"{r} {n}" for r, n in sorted(drops.counts.items(), key=lambda kv: (-kv[1], kv[0])))
        raise InputError(f"tokenizer: no document to train on (dropped: {shown or 'none'}); check pack.sources "
                         "and the limit behind the largest drop (pack.max_doc_bytes, tokenizer.train_max_bytes)")
    log.info("training a %d-token byte-level BPE on %d documents", cfg.vocab_size, len(sample))
    tok = train_tokenizer(sample, cfg)
    ref = tokenizer_ref(tok, out.file_uri("tokenizer.json"), cfg.eos_token, trained=True)
    with out.open_local("tokenizer.json") as local:
        local.write_text(tok.to_str())
    out.commit({"kind": "tokenizer", "version": TOKENIZER_VERSION, "config": settings, "seed": seed,
                "inputs": sorted(input_hashes), "sha256": ref.sha256, "vocab_size": ref.vocab_size,
                "eos_id": ref.eos_id, "train_documents": len(sample)})
    return tok, ref
