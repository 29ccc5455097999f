"""Select flow: score every checkpoint of a training run and choose the one to release.

    primer select --profile tiny --run <train run URI>
    prefect deployment run 'select/tiny' -p run=<train run URI>

Each checkpoint is scored on its validation loss (recorded by training) and greedy pass@1 on the MBPP
*validation* split (task ids 511-600; never the test split). The rule (`select.rule`, default
pass_then_loss): highest MBPP-validation pass@1, ties -> lowest validation loss, then the latest step.
Publishes the candidate table and the reason; returns the selection's URI (`select/<key>`, whose
manifest.json holds candidates, chosen and reason).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task

from primer import dashboard
from primer.config import load_config
from primer.secrets import install_log_redaction
from primer.settings.evaluate import EvaluateConfig, SelectConfig
from primer.settings.store import StoreConfig
from primer.store import open_store
from tasks.select import select_run


@task(name="score-checkpoints")
def score_checkpoints(store_cfg: StoreConfig, sel: SelectConfig, ev: EvaluateConfig, run: str) -> dict[str, Any]:
    """MBPP-validation pass@1 of every checkpoint, then the choice (reused when already in the store)."""
    progress = dashboard.Progress("select-progress", "Scoring checkpoints on MBPP validation")
    manifest = select_run(open_store(store_cfg), sel, ev, run, on_progress=progress.update)
    progress.done()
    return manifest


def candidate_rows(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    chosen = manifest["chosen"]["step"]
    return [{"step": c["step"], "mbpp_val_pass@1": c["pass@1"], "passed": f"{c['n_passed']}/{c['n_tasks']}",
             "val_loss": c.get("val_loss"), "train_loss": c.get("train_loss"), "tokens": c.get("tokens"),
             "chosen": "yes" if c["step"] == chosen else "", "checkpoint": c["uri"]} for c in manifest["candidates"]]


def publish(manifest: dict[str, Any]) -> None:
    rows = candidate_rows(manifest)
    dashboard.table("select-candidates", rows, "Checkpoints: MBPP-validation pass@1 and validation loss")
    reused = " (reused)" if manifest.get("reused") else ""
    dashboard.markdown(
        "select-summary",
        f"## Checkpoint selection{reused}\n\nRun `{manifest['run']}` — {len(rows)} checkpoints scored on MBPP "
        f"**validation** (task ids 511-600, {len(manifest['task_ids'])} tasks, `{manifest['prompt_format']}` "
        f"prompt, greedy, max {manifest['max_new_tokens']} new tokens).\n\n"
        f"**Rule** ({manifest['rule']}): {manifest['rule_text']}.\n\n**Chosen**: {manifest['reason']}\n\n"
        f"Selection: `{manifest['uri']}`\n\n" + dashboard.markdown_table(rows),
        "Checkpoint selection: candidates, rule and reason")


@flow(name="select", log_prints=True)
def select(profile: str = "tiny", overrides: dict[str, Any] | None = None, run: str = "") -> str:
    """Choose a checkpoint of a training run. Returns the selection URI (select/<key>).

    Args:
        profile: named profile (tiny, small, phi1).
        overrides: dotted settings, e.g. {"select.limit": 0, "select.rule": "loss"}.
        run: URI of a training run (train/<run_key>); empty = train this configuration (flows.train).
    """
    install_log_redaction()
    cfg = load_config(profile, overrides)
    if not run:
        from flows.train import train

        run = train(profile, overrides)
    manifest = score_checkpoints(cfg.store, cfg.select, cfg.evaluate, run)
    get_run_logger().info("chose %s", manifest["reason"])
    publish(manifest)
    return manifest["uri"]
