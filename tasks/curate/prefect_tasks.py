"""The curate stage's Prefect tasks: the units of `tasks/curate/` with their retries and cache policy.

No task is cached by Prefect (`NO_CACHE`): each unit resumes from its own marker in the work area
(`work.py`), which survives a crash and is keyed by content, and the whole output is reused by its key.
Units that read or write the store or the sources are retried, for transient network errors only
(`primer.prefect_setup.retry_transient`): an input or settings error fails at once with its one line.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from primer import dashboard
from primer.prefect_setup import NETWORK_RETRIES, NETWORK_RETRY_DELAYS, retry_transient
from tasks.curate import annotate, output, quality, stages

_IO = {"cache_policy": NO_CACHE, "retries": NETWORK_RETRIES, "retry_delay_seconds": NETWORK_RETRY_DELAYS,
       "retry_condition_fn": retry_transient}

prepare = task(name="curate-prepare", **_IO)(stages.prepare)
filter_shard = task(name="curate-filter-shard", **_IO)(stages.filter_shard)
dedup_bucket = task(name="curate-dedup-bucket", **_IO)(stages.dedup_bucket)
dedup_cluster = task(name="curate-dedup-cluster", **_IO)(stages.dedup_cluster)
annotate_sample = task(name="curate-annotate", cache_policy=NO_CACHE)(dashboard.with_progress(
    annotate.annotate_sample, "curate-annotate-progress", "Curate annotation: documents labelled of the sample"))
train_classifier = task(name="curate-train-classifier", cache_policy=NO_CACHE)(quality.train_classifier)
finalize_shard = task(name="curate-finalize-shard", **_IO)(stages.finalize_shard)
write_output = task(name="curate-write-output", cache_policy=NO_CACHE)(output.write_output)
