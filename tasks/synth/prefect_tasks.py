"""The synthesize stage's Prefect tasks: the one place that declares their retries and cache policy.

Retries are for transient network errors only (the store or the endpoint dropped a connection, timed out):
a retry is safe because the ledger answers every request already paid for. Input, configuration and
authorization errors (`PrimerError`, e.g. a `TeacherError` for 401/403/404-model) are never retried: they
fail in seconds with their one line.
"""

from __future__ import annotations

import errno
import functools
import time
from collections import deque
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from primer import dashboard
from primer.errors import PrimerError
from tasks.synth import batches, stage

_TRANSIENT_ERRNOS = {errno.ECONNRESET, errno.ECONNREFUSED, errno.ECONNABORTED, errno.ETIMEDOUT,
                     errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EPIPE}
_TRANSIENT_NAMES = ("ConnectionError", "Timeout", "TimeoutError", "EndpointConnectionError",
                    "ClientConnectorError", "ServerDisconnectedError", "APIConnectionError", "APITimeoutError")


def is_transient(exc: BaseException | None) -> bool:
    """True for a network hiccup worth retrying; never for a PrimerError (bad input, config or credentials)."""
    while exc is not None:
        if isinstance(exc, PrimerError):
            return False
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return True
        if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
            return True
        if any(n in type(exc).__name__ for n in _TRANSIENT_NAMES):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _retry_transient(task_: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except BaseException as e:  # the task's exception, re-raised by result()
        return is_transient(e)
    return False


_NET = {"retries": 2, "retry_delay_seconds": 10, "retry_condition_fn": _retry_transient, "cache_policy": NO_CACHE}
_LOCAL = {"cache_policy": NO_CACHE}


prepare = task(name="synth-prepare", **_LOCAL)(stage.prepare)
plan_requests = task(name="synth-plan", **_LOCAL)(stage.plan_requests)
write_skipped = task(name="synth-write-skipped", **_LOCAL)(stage.write_skipped)
answer_batch = task(name="synth-answer-batch", **_NET)(stage.answer_requests)
verify_batch = task(name="synth-verify-exercises", **_LOCAL)(stage.verify_exercises)
write_output = task(name="synth-write-output", **_LOCAL)(stage.write_output)


# ---- the generation phases: their requests mapped in batches on the flow's task runner -----------------

def send_mapped(cfg: Any, phase: str, requests: list[Any], progress: Any = None) -> tuple[list[Any], dict[str, Any]]:
    """`stage.Send` on the task runner: `answer_batch` over the units of `batches.split`, at most
    `batches.window` in flight; answers in request order, so the output is the same whatever the runner.
    With units side by side, what the ledger already holds is answered here first and only the rest is
    mapped. Each unit logs its own teacher lines; `progress` (the phase's artifact) moves as units finish."""
    t0 = time.monotonic()
    known, left = batches.answered(stage.make_teacher(cfg), requests) if batches.parallel(cfg) else (None, requests)
    units = batches.split(cfg, left)
    tally = batches.PhaseTally(phase, units, progress, known[1] if known else None)
    results: list[Any] = [None] * len(units)
    in_flight: deque[tuple[int, Any]] = deque()

    def finish_oldest() -> None:
        i, future = in_flight.popleft()
        results[i] = future.result()   # a unit that failed after its retries fails the phase (answers kept)
        tally.add(results[i][1])

    limit = batches.window(cfg, len(units))
    for i, unit in enumerate(units):
        if len(in_flight) >= limit:
            finish_oldest()
        name = f"synth-{phase}-batch-{i + 1}-of-{len(units)}"
        label = batches.unit_label(phase, i, len(units))
        in_flight.append((i, answer_batch.with_options(task_run_name=name).submit(
            cfg, label, unit, dashboard.ProgressLines())))
    while in_flight:
        finish_oldest()
    return batches.merge(requests, ([known] if known else []) + results, time.monotonic() - t0)


def verify_exercises(cfg: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Exercise verification mapped over batches on the flow's task runner; rows come back in order, so
    the output is the same whatever the runner."""
    size = max(1, cfg.synth.batch_requests)
    chunks = [rows[i:i + size] for i in range(0, len(rows), size)]
    futures = [verify_batch.submit(cfg, chunk) for chunk in chunks]
    return [row for f in futures for row in f.result()]


def _in_phase(phase: str, unit: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a phase's unit with its requests mapped (`send_mapped`) and its progress artifact."""
    run = dashboard.with_progress(functools.partial(unit, send=send_mapped), f"synthesize-{phase}-progress",
                                  f"Synthesize {phase}: teacher answers received of requested")
    return run(*args, **kwargs)


def expand_topics(cfg: Any, topics: list[Any]) -> dict[str, Any]:
    return _in_phase("topics", stage.expand_topics, cfg, topics)


def generate_textbooks(cfg: Any, topics: list[Any], seed: dict[str, Any] | None) -> dict[str, Any]:
    return _in_phase("textbooks", stage.generate_textbooks, cfg, topics, seed)


def generate_exercises(cfg: Any, pools: dict[str, list[str]], leaves: list[Any]) -> dict[str, Any]:
    return _in_phase("exercises", stage.generate_exercises, cfg, pools, leaves)


def generate_variants(cfg: Any, rows: list[dict[str, Any]], pools: dict[str, list[str]]) -> dict[str, Any]:
    return _in_phase("variants", stage.generate_variants, cfg, rows, pools, verify=verify_exercises)
