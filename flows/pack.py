"""Pack flow: documents -> tokenizer -> EOS-delimited rows of exactly seq_len tokens -> Parquet shards.

    primer pack --profile tiny --set pack.seq_len=512
    prefect deployment run 'pack/tiny' -p overrides='{"pack.seq_len": 512}'
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from primer import dashboard
from primer.config import PrimerConfig, load_config
from primer.prefect_setup import stage_task, task_runner_for
from primer.documents import DropCounter
from primer.secrets import install_log_redaction
from primer.settings.pack import PackConfig, SourceSpec, TokenizerConfig
from primer.settings.store import StoreConfig
from primer.store import open_store
from tasks.pack import pack_documents
from tasks.sources import ResolvedSource, read_documents, resolve_source
from tasks.tokenizer import TokenizerRef, prepare_tokenizer


@stage_task(network=True, cache=False)  # not cached: it computes the content fingerprints everything keys on
def resolve_sources(specs: list[SourceSpec], store_cfg: StoreConfig) -> list[ResolvedSource]:
    """List each source's files and fingerprint their contents (network-touching: retried)."""
    return [resolve_source(spec, store_cfg, i) for i, spec in enumerate(specs)]


@stage_task
def get_tokenizer(store_cfg: StoreConfig, cfg: TokenizerConfig, sources: list[ResolvedSource],
                  seed: int) -> TokenizerRef:
    """Load the configured tokenizer.json, or train a byte-level BPE on the sources (reused if stored)."""
    store = open_store(store_cfg)

    def texts() -> list[str]:
        drops = DropCounter()
        return [d.text for s in sources for d in read_documents(s, drops, store_cfg)]

    _, ref = prepare_tokenizer(store, cfg, texts, [s.fingerprint for s in sources], seed)
    return ref


@stage_task
def pack_shards(store_cfg: StoreConfig, cfg: PackConfig, tok: TokenizerRef,
                sources: list[ResolvedSource]) -> dict[str, Any]:
    """Tokenize, split, shuffle, cut and write the shards; reuse them when the inputs are unchanged."""
    from primer.tokenizer import load_tokenizer

    store = open_store(store_cfg)
    tokenizer, _ = load_tokenizer(store, tok.uri, tok.eos_token)
    progress = dashboard.Progress("pack-progress", "Tokenizing and writing token shards")
    manifest = pack_documents(store, cfg, tokenizer, tok, sources, progress=progress.update)
    progress.done()
    return manifest


def publish(manifest: dict[str, Any]) -> None:
    rows = [{"source": s["name"], "weight": s["weight"], "documents": s["documents"], "dropped": s["dropped"],
             "tokens": s["tokens"], "train_tokens": s["tokens_weighted"]["train"],
             "val_tokens": s["tokens_weighted"]["val"]} for s in manifest["sources"]]
    dashboard.table("pack-sources", rows, "Documents and tokens per source (weighted = after mixture weights)")
    sp = manifest["splits"]
    summary = (
        f"## Token shards\n\n`{manifest['uri']}`{' (reused)' if manifest.get('reused') else ''}\n\n"
        f"- seq_len **{manifest['seq_len']}**, tokenizer `{manifest['tokenizer']['sha256'][:12]}` "
        f"(vocab {manifest['tokenizer']['vocab_size']}, EOS id {manifest['eos_id']})\n"
        f"- train: **{sp['train']['rows']:,} rows** ({sp['train']['tokens']:,} tokens, "
        f"{len(sp['train']['shards'])} shards, {sp['train']['remainder_tokens']} remainder tokens)\n"
        f"- val: **{sp['val']['rows']:,} rows** ({sp['val']['tokens']:,} tokens)\n"
        f"- dropped documents: {manifest['drops'] or 'none'}\n\n" + dashboard.markdown_table(rows)
    )
    dashboard.markdown("pack-summary", summary, "Pack stage summary")


@flow(name="pack", log_prints=True, task_runner=task_runner_for("pack"))
def pack(profile: str = "tiny", overrides: dict[str, Any] | None = None) -> str:
    """Pack document datasets into EOS-delimited token shards. Returns the shards' store URI.

    Args:
        profile: named profile (tiny, small, phi1).
        overrides: dotted settings, e.g. {"pack.seq_len": 512, "store.root": "s3://bucket/primer"}.
    """
    install_log_redaction()
    cfg: PrimerConfig = load_config(profile, overrides)
    logger = get_run_logger()
    sources = resolve_sources(cfg.pack.sources, cfg.store)
    tok = get_tokenizer(cfg.store, cfg.tokenizer, sources, cfg.pack.seed)
    state = pack_shards(cfg.store, cfg.pack, tok, sources, return_state=True)
    manifest = state.result()
    if state.name == "Cached":
        manifest = {**manifest, "reused": True}
    publish(manifest)
    sp = manifest["splits"]
    logger.info("token shards %s: %d train rows, %d val rows of %d tokens%s", manifest["uri"], sp["train"]["rows"],
                sp["val"]["rows"], manifest["seq_len"], " (reused)" if manifest.get("reused") else "")
    return manifest["uri"]
