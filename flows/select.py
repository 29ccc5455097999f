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

from prefect import flow

from primer.config import load_config
from primer.secrets import install_log_redaction
from tasks.select import prefect_tasks as T


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
    manifest = T.score_checkpoints(cfg.store, cfg.select, cfg.evaluate, run)
    T.publish(manifest)
    return manifest["uri"]
