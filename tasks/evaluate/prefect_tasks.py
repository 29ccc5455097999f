"""The evaluate stage's Prefect tasks (the one place they are declared). Evaluation is reused through its
store key (tasks/evaluate/run.py), so no task result cache: an endpoint is never silently reused."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task

from primer.prefect_setup import stage_task
from primer.sandbox import ExecResult, Limits, Program
from primer.settings.evaluate import EvaluateConfig
from primer.settings.store import StoreConfig
from primer.store import open_store
from tasks.evaluate import report as R
from tasks.evaluate import run as E


@stage_task(cache=False, name="prepare-evaluation")
def prepare(store_cfg: StoreConfig, ev: EvaluateConfig, release: str) -> E.Prepared:
    """Plan, key and (unless reused) every completion, as programs to execute."""
    return E.prepare(open_store(store_cfg), ev, release, log=get_run_logger().info)


@stage_task(cache=False, name="execute-batch")
def execute_batch(batch: tuple[list[Program], list[Limits]], workers: int) -> list[ExecResult]:
    """One batch of programs in the sandbox (mapped on the stage's task runner)."""
    return E.run_batch(batch, workers)


@stage_task(cache=False, name="finish-evaluation")
def finish(store_cfg: StoreConfig, ev: EvaluateConfig, prepared: E.Prepared,
           results: list[list[ExecResult]]) -> dict[str, Any]:
    return E.finish(open_store(store_cfg), ev, prepared, results, log=get_run_logger().info)


@task(name="publish-evaluation")
def publish(store_cfg: StoreConfig, manifest: dict[str, Any]) -> None:
    store = open_store(store_cfg)
    out = store.read_output(manifest["uri"], "evaluate")
    summary = store.read_json(out.file_uri("summary.json"))
    report = store.read_json(out.file_uri("contamination.json")) if out.has_file("contamination.json") else None
    R.publish(summary, manifest, report)
