"""Ablation (phi-1, Figure 2.1, at small scale): the same model trained on equal token budgets of

    (a) unfiltered code         the raw sources curate reads
    (b) curated code            curate's output
    (c) curated + synthetic     (b) + the teacher's textbooks (skipped with a note when no teacher)

Every arm uses one tokenizer (the curated pack's), the same model, seed and steps, so each sees exactly
`max_steps x batch_size x (seq_len - 1)` training tokens. Each arm's best checkpoint is scored on the loss
of HumanEval's reference programs (comparable across arms, moves at small scale) and on its own validation
loss. Publishes a comparison table and a plot; returns the URI of the ablation output.

    primer ablation --profile tiny
"""

from __future__ import annotations

import io
from typing import Any

from prefect import flow, get_run_logger

from primer import dashboard
from primer.config import PrimerConfig, load_config
from primer.secrets import install_log_redaction
from primer.store import content_key, open_store
from tasks.ablation import humaneval_texts, load_checkpoint_model, mean_token_loss
from primer.tokenizer import load_tokenizer

ABLATION_VERSION = 1


def comparison_plot(rows: list[dict[str, Any]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    names = [r["arm"] for r in rows]
    ax.bar(names, [r["humaneval_loss"] for r in rows], color=["#999", "#4a7", "#37c"][: len(rows)])
    ax.set_ylabel("loss on HumanEval solutions")
    ax.set_title(f"equal budget: {rows[0]['train_tokens']:,} training tokens per arm")
    for i, r in enumerate(rows):
        ax.text(i, r["humaneval_loss"], f"{r['humaneval_loss']:.3f}", ha="center", va="bottom")
    ax.set_ylim(min(r["humaneval_loss"] for r in rows) * 0.95, max(r["humaneval_loss"] for r in rows) * 1.03)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


@flow(name="ablation", log_prints=True)
def ablation(profile: str = "tiny", overrides: dict[str, Any] | None = None, humaneval_limit: int = 0) -> str:
    """Train one model per data arm at an equal token budget and compare them.

    Args:
        profile: named profile (tiny, small, phi1).
        overrides: dotted settings shared by every arm (e.g. {"train.pretrain.max_steps": 400}).
        humaneval_limit: score on the first N HumanEval reference programs only (0 = all 164).
    """
    from flows.curate import curate
    from flows.pack import pack
    from flows.pipeline import pretraining_sources
    from flows.synthesize import synthesize
    from flows.train import best_checkpoint, train

    install_log_redaction()
    overrides = dict(overrides or {})
    cfg: PrimerConfig = load_config(profile, overrides)
    logger = get_run_logger()
    store = open_store(cfg.store)

    curated = curate(profile, overrides)
    synth_output = store.read_output(synthesize(profile, overrides), "synthesize")
    synth = None if synth_output.skipped else synth_output.uri

    # (b) first: its tokenizer is shared by every arm
    arms: dict[str, str] = {"curated": pack(profile, {**overrides, "pack.sources": pretraining_sources(curated, None)})}
    tokenizer_uri = store.resolve(store.read_output(arms["curated"], "pack").manifest["tokenizer"]["uri"])
    shared = {**overrides, "tokenizer.uri": tokenizer_uri}
    raw_sources = [{"uri": s.uri, "name": f"raw:{s.display_name()}", "glob": s.glob, "format": s.format,
                    "text_column": s.text_column} for s in cfg.curate.sources]
    arms = {"unfiltered": pack(profile, {**shared, "pack.sources": raw_sources}), **arms}
    if synth:
        arms["curated+synthetic"] = pack(profile, {**shared, "pack.sources": pretraining_sources(curated, synth)})
    else:
        logger.warning("arm curated+synthetic skipped: %s", synth_output.reason)

    tokenizer, _ = load_tokenizer(store, tokenizer_uri, cfg.tokenizer.eos_token)
    tokenizer.encode_special_tokens = True
    texts = humaneval_texts(humaneval_limit)
    rows = []
    for arm, shards in arms.items():
        run_uri = train(profile, {**shared, "train.shards": shards, "train.finetune_shards": ""})
        run = store.read_output(run_uri, "train").manifest
        best = best_checkpoint(run)
        model = load_checkpoint_model(store, best)
        rows.append({
            "arm": arm,
            "train_tokens": run["checkpoints"][-1]["tokens"],
            "humaneval_loss": round(mean_token_loss(model, tokenizer, texts, model.cfg.max_seq_len), 4),
            "own_val_loss": round(best["val_loss"], 4),
            "best_step": best["step"],
            "shards": store.ref(shards),
            "run": store.ref(run_uri),
            "run_hash": store.read_output(run_uri).content_hash,
        })
        logger.info("arm %s: HumanEval-solution loss %.4f", arm, rows[-1]["humaneval_loss"])

    out = store.output("ablation", content_key(ABLATION_VERSION, [(r["arm"], r["run_hash"]) for r in rows], humaneval_limit))
    if not out.is_complete():
        out.clean_partial()
        png = comparison_plot(rows)
        with out.open_local("comparison.png") as local:
            local.write_bytes(png)
        out.write_json("results.json", rows)
        out.commit({"kind": "ablation", "version": ABLATION_VERSION, "arms": rows,
                    "skipped": [] if synth else [{"arm": "curated+synthetic", "reason": synth_output.reason}],
                    "metric": "mean next-token loss on HumanEval prompt+canonical_solution (lower is better)"})
    dashboard.table("ablation-comparison", [{k: v for k, v in r.items() if k not in ("shards", "run", "run_hash")} for r in rows],
                    "Equal-token-budget comparison of data mixtures")
    import base64

    image = base64.b64encode(store.read_bytes(out.file_uri("comparison.png"))).decode()
    dashboard.markdown("ablation-summary", "## Data ablation (phi-1 Fig. 2.1, small scale)\n\n"
                       f"![comparison](data:image/png;base64,{image})\n\n"
                       + dashboard.markdown_table([{k: v for k, v in r.items() if k not in ("shards", "run_hash")} for r in rows])
                       + ("" if synth else f"\n_curated+synthetic skipped: {synth_output.reason}_\n"),
                       "Ablation results")
    return out.uri
