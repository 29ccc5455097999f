"""Prefect tasks of the synthesize stage: thin wrappers over the plain functions in tasks/synth/stage.py.

Network-touching tasks retry (safe: the ledger makes a retry re-pay nothing already answered).
"""

from __future__ import annotations

from typing import Any, Callable

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.synth import stage

_NET = {"retries": 2, "retry_delay_seconds": 10, "cache_policy": NO_CACHE}
_LOCAL = {"cache_policy": NO_CACHE}

prepare = task(name="synth-prepare", **_LOCAL)(stage.prepare)
expand_topics = task(name="synth-expand-topics", **_NET)(stage.expand_topics)
generate_textbooks = task(name="synth-textbooks", **_NET)(stage.generate_textbooks)
generate_exercises = task(name="synth-exercises", **_NET)(stage.generate_exercises)
verify_exercises = task(name="synth-verify-exercises", retries=1, **_LOCAL)(stage.verify_exercises)
generate_variants = task(name="synth-variants", **_NET)(stage.generate_variants)
write_output = task(name="synth-write-output", retries=1, **_LOCAL)(stage.write_output)


def prefect_ops() -> dict[str, Callable[..., Any]]:
    return {name: globals()[name] for name in stage.PHASES}
