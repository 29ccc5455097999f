"""The curate stage's Prefect tasks: the units of `tasks/curate/` with their retries and cache policy.

No task is cached by Prefect (`NO_CACHE`): each unit resumes from its own marker in the work area
(`work.py`), which survives a crash and is keyed by content, and the whole output is reused by its key.
Units that read or write the store are retried once, but never for an input or settings error (a
`PrimerError` says what to fix; running it again would only delay the message).
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from primer.errors import PrimerError
from tasks.curate import annotate, output, quality, stages


def _not_input_error(task_, task_run, state) -> bool:
    """Retry only failures that are not one of ours (input/settings errors fail at once)."""
    try:
        state.result()
    except PrimerError:
        return False
    except BaseException:
        return True
    return True


_IO = {"cache_policy": NO_CACHE, "retries": 1, "retry_condition_fn": _not_input_error}

prepare = task(name="curate-prepare", cache_policy=NO_CACHE)(stages.prepare)
filter_shard = task(name="curate-filter-shard", **_IO)(stages.filter_shard)
dedup_bucket = task(name="curate-dedup-bucket", **_IO)(stages.dedup_bucket)
dedup_cluster = task(name="curate-dedup-cluster", **_IO)(stages.dedup_cluster)
annotate_sample = task(name="curate-annotate", cache_policy=NO_CACHE)(annotate.annotate_sample)
train_classifier = task(name="curate-train-classifier", cache_policy=NO_CACHE)(quality.train_classifier)
finalize_shard = task(name="curate-finalize-shard", **_IO)(stages.finalize_shard)
write_output = task(name="curate-write-output", cache_policy=NO_CACHE)(output.write_output)
