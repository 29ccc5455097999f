"""`curate`: raw code -> filtered, deduplicated, quality-scored, decontaminated documents (phi-1 recipe).

The flow only calls the stage's tasks in order (tasks/curate/prefect_tasks.py) and publishes; the units
are in tasks/curate/ (docs/curate.md). Mapped units (filter shards, dedup partitions, finalize shards) run on
the stage's task runner, `task_runner_for("curate")`: one thread per core by default, or what the deployment sets in
`PRIMER_CURATE_TASK_RUNNER` (`processes:N`, `dask:tcp://host:port`, `ray:...`). The output is the same, byte
for byte, whatever the runner.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prefect import flow, get_run_logger, unmapped

from primer.config import load_config
from primer.prefect_setup import task_runner_for
from primer.store import open_store
from tasks.curate import prefect_tasks as T
from tasks.curate import report
from tasks.curate.stages import locate_mbpp, require_filter_survivors


# Threads bounded by the cores by default: Prefect's unbounded pool would start every shard at once and hold
# them all in memory (peak RSS would grow with the corpus, not with the shard).
@flow(name="curate", task_runner=task_runner_for("curate", default=f"threads:{os.cpu_count() or 2}"))
def curate(profile: str = "tiny", overrides: dict[str, Any] | None = None) -> str:
    """Curate the configured sources; returns the URI of the output (a stage output with manifest.json)."""
    cfg = load_config(profile, overrides)
    c = cfg.curate
    c.mbpp_path, mbpp_missing = locate_mbpp(c)  # the lookup evaluate uses: setting, env, ../shared, cache
    if mbpp_missing:
        get_run_logger().info(f"curate: decontaminating against HumanEval only ({mbpp_missing})")
    t0 = time.time()
    run = T.prepare(c, cfg.store, cfg.teacher)
    out = open_store(cfg.store).output("curate", run.key)
    if out.is_complete():
        report.publish_reused(out.uri)
        return out.uri
    # 1. filters + dedup signatures, per shard
    shard_stats = T.filter_shard.map(run.plans, unmapped(c), unmapped(cfg.store), unmapped(run.key)).result()
    require_filter_survivors(shard_stats)  # nothing left: fail now, with the drop counts
    t1 = time.time()
    # 2. global dedup: verified duplicate edges per hash partition, then union-find over those edges only
    bucket_stats = T.dedup_bucket.map(list(range(c.dedup_buckets)), unmapped(run.shards), unmapped(c),
                                      unmapped(run.key), unmapped(cfg.store)).result()
    dedup = T.dedup_cluster(run.shards, c, run.key, cfg.store)
    t2 = time.time()
    # 3. annotation sample + quality classifier
    annotations: dict[str, Any] = {"rows": [], "annotator": c.annotator, "usage": None}
    classifier = None
    if c.annotate_n > 0:
        annotations = T.annotate_sample(c, cfg.teacher, cfg.store, run.key, shard_stats)
        classifier = T.train_classifier(c, cfg.teacher, cfg.store, run.key, annotations)
    t3 = time.time()
    scores = {s: {} for s in run.shards}
    for r in annotations["rows"]:
        if r["score"] is not None:
            scores[r["shard"]][r["row"]] = float(r["score"])
    # 4. quality filter + decontamination + write, per shard
    final_stats = T.finalize_shard.map(run.shards, unmapped(c), unmapped(cfg.store), unmapped(run.key),
                                       unmapped(classifier["model_key"] if classifier else None),
                                       [scores[s] for s in run.shards], unmapped(cfg.teacher)).result()
    t4 = time.time()
    timings = {"filter": round(t1 - t0, 3), "dedup": round(t2 - t1, 3), "annotate+classifier": round(t3 - t2, 3),
               "quality+decontamination+write": round(t4 - t3, 3), "total": round(time.time() - t0, 3)}
    manifest = T.write_output(cfg, run, shard_stats, bucket_stats, dedup, annotations, classifier, final_stats,
                              timings)
    # publishing
    if classifier:
        report.publish_classifier(classifier, annotations)
    report.publish_output(out.uri, manifest)
    return out.uri


if __name__ == "__main__":  # pragma: no cover
    import sys

    print(curate(sys.argv[1] if len(sys.argv) > 1 else "tiny"))
