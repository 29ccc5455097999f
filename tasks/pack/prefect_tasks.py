"""The pack stage's Prefect tasks: the units of `tasks/pack/` with their retries and cache policy.

Only transient network errors are retried (`retry_transient`): an input error (a missing file, a corrupt
Parquet page, a wrong setting) fails at once with its one line. The tokenizer is cached across runs by
inputs (`stage_task`); the shards are reused through their content-addressed output, not Prefect's cache.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from primer.prefect_setup import retry_transient, stage_task
from tasks.pack import encode, steps

_UNIT = {"cache_policy": NO_CACHE, "persist_result": False}

# Not cached: it computes the content fingerprints everything keys on. Network-touching: retried.
resolve_sources = stage_task(network=True, cache=False, name="pack-resolve-sources")(steps.resolve_sources)
get_tokenizer = stage_task(name="pack-tokenizer")(steps.get_tokenizer)
find_output = task(name="pack-find-output", **_UNIT)(steps.find_output)
plan_shards = task(name="pack-plan-shards", **_UNIT)(steps.plan_shards)
# Mapped on the stage's task runner; reads sources (maybe remote), so a network hiccup is retried.
tokenize_shard = task(name="pack-tokenize-shard", retries=2, retry_delay_seconds=[2, 10],
                      retry_condition_fn=retry_transient, **_UNIT)(encode.tokenize_shard)
write_output = task(name="pack-write-shards", **_UNIT)(steps.write_output)
