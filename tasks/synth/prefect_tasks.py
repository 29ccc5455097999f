"""The synthesize stage's Prefect tasks: the one place that declares their retries and cache policy.

Retries are for transient network errors only (the store or the endpoint dropped a connection, timed out):
a retry is safe because the ledger answers every request already paid for. Input, configuration and
authorization errors (`PrimerError`, e.g. a `TeacherError` for 401/403/404-model) are never retried: they
fail in seconds with their one line.
"""

from __future__ import annotations

import errno
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from primer import dashboard
from primer.errors import PrimerError
from tasks.synth import stage

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


def _with_progress(fn: Any, phase: str) -> Any:
    return dashboard.with_progress(fn, f"synthesize-{phase}-progress",
                                   f"Synthesize {phase}: teacher answers received of requested")


prepare = task(name="synth-prepare", **_LOCAL)(stage.prepare)
plan_requests = task(name="synth-plan", **_LOCAL)(stage.plan_requests)
write_skipped = task(name="synth-write-skipped", **_LOCAL)(stage.write_skipped)
expand_topics = task(name="synth-expand-topics", **_NET)(_with_progress(stage.expand_topics, "topics"))
generate_textbooks = task(name="synth-textbooks", **_NET)(_with_progress(stage.generate_textbooks, "textbooks"))
generate_exercises = task(name="synth-exercises", **_NET)(_with_progress(stage.generate_exercises, "exercises"))
verify_batch = task(name="synth-verify-exercises", **_LOCAL)(stage.verify_exercises)
generate_variants = task(name="synth-variants", **_NET)(_with_progress(stage.generate_variants, "variants"))
write_output = task(name="synth-write-output", **_LOCAL)(stage.write_output)


def verify_exercises(cfg: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Exercise verification mapped over batches on the flow's task runner; rows come back in order, so
    the output is the same whatever the runner."""
    size = max(1, cfg.synth.batch_requests)
    chunks = [rows[i:i + size] for i in range(0, len(rows), size)]
    futures = [verify_batch.submit(cfg, chunk) for chunk in chunks]
    return [row for f in futures for row in f.result()]
