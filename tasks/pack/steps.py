"""Pack's task bodies: each takes settings (serialisable, so any worker can run it) and opens the store
itself. Prefect-free; `prefect_tasks.py` declares them as tasks."""

from __future__ import annotations

from typing import Any

from primer import dashboard
from primer.documents import Drop, DropCounter
from primer.settings.pack import PackConfig, SourceSpec, TokenizerConfig
from primer.settings.store import StoreConfig
from primer.store import open_store
from primer.tokenizer import TokenizerRef
from tasks.pack import encode, run
from tasks.sources import ResolvedSource, read_documents, resolve_source
from tasks.tokenizer import prepare_tokenizer


def resolve_sources(specs: list[SourceSpec], store_cfg: StoreConfig) -> list[ResolvedSource]:
    """List each source's files (or its stage output's manifest) and fingerprint their contents."""
    return [resolve_source(spec, store_cfg, i) for i, spec in enumerate(specs)]


def tokenizer_texts(sources: list[ResolvedSource], cfg: PackConfig, store_cfg: StoreConfig,
                    drops: DropCounter) -> list[str]:
    """The documents a tokenizer may be trained on: every source's, less those over `max_doc_bytes`
    (counted as too_large, exactly as packing drops them)."""
    texts = []
    for src in sources:
        for doc in read_documents(src, drops, store_cfg):
            if encode.too_large(doc.text, cfg.max_doc_bytes):
                drops.add(Drop(doc.id, src.name, "too_large", encode.too_large_detail(doc.text, cfg.max_doc_bytes)))
                continue
            texts.append(doc.text)
    return texts


def get_tokenizer(store_cfg: StoreConfig, tok_cfg: TokenizerConfig, cfg: PackConfig,
                  sources: list[ResolvedSource]) -> TokenizerRef:
    """Load the configured tokenizer.json, or train a byte-level BPE on the sources (reused if stored)."""
    drops = DropCounter()
    inputs = [s.fingerprint for s in sources] + [f"max_doc_bytes={cfg.max_doc_bytes}"]
    _, ref = prepare_tokenizer(open_store(store_cfg), tok_cfg, lambda: tokenizer_texts(sources, cfg, store_cfg, drops),
                               inputs, cfg.seed, drops)
    return ref


def find_output(store_cfg: StoreConfig, cfg: PackConfig, tok: TokenizerRef,
                sources: list[ResolvedSource]) -> dict[str, Any] | None:
    return run.find_output(open_store(store_cfg), cfg, tok, sources)


def plan_shards(sources: list[ResolvedSource], cfg: PackConfig, store_cfg: StoreConfig) -> list[encode.ShardPlan]:
    return encode.plan_shards(sources, cfg, store_cfg)


def write_output(store_cfg: StoreConfig, cfg: PackConfig, tok: TokenizerRef, sources: list[ResolvedSource],
                 plans: list[encode.ShardPlan], parts: list[encode.TokenizedSource]) -> dict[str, Any]:
    """Join the tokenized shards in order, cut and write the rows, commit the manifest."""
    progress = dashboard.Progress("pack-progress", "Tokenizing and writing token shards")
    progress.update(0.5)
    manifest = run.write_output(open_store(store_cfg), cfg, tok, sources, encode.join_shards(sources, parts, plans),
                                progress.update)
    progress.done()
    return manifest
