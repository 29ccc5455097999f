"""Evaluate flow: HumanEval / MBPP (test split) and HumanEval+ / MBPP+ pass@k of a release, a checkpoint or an
endpoint, full and pruned of tasks close to the training documents.

    primer evaluate --profile tiny --release <release dir or URI>
    primer evaluate --set evaluate.backend=openai --set evaluate.endpoint.base_url=http://127.0.0.1:8000/v1 \
                    --set evaluate.endpoint.model=primer-phi
    prefect deployment run 'evaluate/tiny' -p release=<release URI>

The sandbox batches are mapped on the stage's task runner ($PRIMER_EVALUATE_TASK_RUNNER, e.g. threads or
dask:tcp://...); results are the same whatever runs them. Returns the evaluation URI (evaluate/<key>).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, unmapped

from primer.config import load_config
from primer.prefect_setup import task_runner_for
from primer.secrets import install_log_redaction
from tasks.evaluate import prefect_tasks as T
from tasks.evaluate.run import batches


@flow(name="evaluate", log_prints=True, task_runner=task_runner_for("evaluate"))
def evaluate(profile: str = "tiny", overrides: dict[str, Any] | None = None, release: str = "") -> str:
    """Score a model on the configured benchmarks. Returns the evaluation URI (evaluate/<key>).

    Args:
        profile: named profile (tiny, small, phi1).
        overrides: dotted settings, e.g. {"evaluate.limit": 0, "evaluate.n_samples": 20, "evaluate.temperature": 0.8}.
        release: a release (directory or release/<key> URI) or a checkpoint URI; empty = export this
            configuration's selected checkpoint (flows.export), or the endpoint with evaluate.backend=openai.
    """
    install_log_redaction()
    cfg = load_config(profile, overrides)
    if not release and cfg.evaluate.backend != "openai":
        from flows.export import export

        release = export(profile, overrides)
    prepared = T.prepare(cfg.store, cfg.evaluate, release)
    work = batches(prepared, cfg.evaluate.exec_batch) if prepared.reused is None else []
    results = T.execute_batch.map(work, unmapped(cfg.evaluate.workers)).result() if work else []
    manifest = T.finish(cfg.store, cfg.evaluate, prepared, results)
    T.publish(cfg.store, manifest)
    return manifest["uri"]
