"""What pack publishes on the Prefect dashboard (artifacts), from its manifest."""

from __future__ import annotations

from typing import Any

from primer import dashboard


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
