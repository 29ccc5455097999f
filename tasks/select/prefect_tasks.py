"""The select stage's Prefect tasks (the one place they are declared). Reuse is by the selection's store
key (tasks/select/run.py), so no task result cache."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task

from primer import dashboard
from primer.prefect_setup import stage_task
from primer.settings.evaluate import EvaluateConfig, SelectConfig
from primer.settings.store import StoreConfig
from primer.store import open_store
from tasks.select import report
from tasks.select.run import select_run


@stage_task(cache=False, name="score-checkpoints")
def score_checkpoints(store_cfg: StoreConfig, sel: SelectConfig, ev: EvaluateConfig, run: str) -> dict[str, Any]:
    """MBPP-validation pass@1 of every checkpoint, then the choice (reused when already in the store)."""
    progress = dashboard.Progress("select-progress", "Scoring checkpoints on MBPP validation")
    manifest = select_run(open_store(store_cfg), sel, ev, run, on_progress=progress.update)
    progress.done()
    get_run_logger().info("chose %s", manifest["reason"])
    return manifest


@task(name="publish-selection")
def publish(manifest: dict[str, Any]) -> None:
    report.publish(manifest)
