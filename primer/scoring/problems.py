"""A benchmark task as the harness scores it (shared by every benchmark loader and the harness)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One benchmark task, as plain data (it crosses process boundaries on a distributed task runner).

    The program of a completion is `prefix + completion` (the prompt for HumanEval, nothing for MBPP) followed
    by `tests`; `reference` is a completion that passes, `entry_point` the function the tests call."""

    task_id: str
    prompt: str
    stop: tuple[str, ...]
    prefix: str
    tests: str
    reference: str
    entry_point: str
    benchmark: str = ""
