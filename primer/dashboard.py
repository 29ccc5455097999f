"""What a stage shows in the Prefect dashboard: progress, tables, markdown summaries, links.

Thin wrappers over Prefect's artifact API that (a) work only when called inside a flow or task run and
are silent no-ops otherwise (so stage code runs the same from a unit test), (b) sanitise artifact keys
(Prefect allows lowercase letters, digits and dashes) and (c) redact secrets from everything shown.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from uuid import UUID

from primer.secrets import redact

log = logging.getLogger("primer")


def in_run() -> bool:
    try:
        from prefect.context import FlowRunContext, TaskRunContext

        return FlowRunContext.get() is not None or TaskRunContext.get() is not None
    except Exception:
        return False


def artifact_key(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")[:100] or "primer"


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, float):
        return round(value, 6)
    return value


def table(key: str, rows: list[dict[str, Any]], description: str = "") -> UUID | None:
    if not in_run():
        return None
    from prefect.artifacts import create_table_artifact

    clean = [{k: _clean(v) for k, v in row.items()} for row in rows]
    return create_table_artifact(table=clean, key=artifact_key(key), description=redact(description))


def markdown(key: str, text: str, description: str = "") -> UUID | None:
    if not in_run():
        return None
    from prefect.artifacts import create_markdown_artifact

    return create_markdown_artifact(markdown=redact(text), key=artifact_key(key), description=redact(description))


def link(key: str, url: str, text: str = "", description: str = "") -> UUID | None:
    if not in_run():
        return None
    from prefect.artifacts import create_link_artifact

    return create_link_artifact(link=url, link_text=text or url, key=artifact_key(key),
                                description=redact(description))


class Progress:
    """A progress artifact updated at most every `min_step` percent and `min_interval_s` seconds (each
    update is an API call); `done()` sets 100."""

    def __init__(self, key: str, description: str = "", min_step: float = 2.0, min_interval_s: float = 0.0):
        self.id: UUID | None = None
        self.last = -min_step
        self.last_t = float("-inf")
        self.min_step, self.min_interval_s = min_step, min_interval_s
        if in_run():
            from prefect.artifacts import create_progress_artifact

            self.id = create_progress_artifact(progress=0.0, key=artifact_key(key), description=redact(description))

    def update(self, fraction: float, force: bool = False) -> None:
        import time

        pct = max(0.0, min(100.0, 100.0 * fraction))
        now = time.monotonic()
        if self.id is None or (not force and (pct - self.last < self.min_step or now - self.last_t < self.min_interval_s)):
            return
        from prefect.artifacts import update_progress_artifact

        update_progress_artifact(artifact_id=self.id, progress=pct)
        self.last, self.last_t = pct, now

    def done(self) -> None:
        self.update(1.0, force=True)


def _run_log() -> Any:
    """Prefect's run logger inside a flow or task run, else the `primer` logger."""
    if in_run():
        from prefect import get_run_logger

        return get_run_logger()
    return log


class ProgressLines:
    """A `progress` callback for `Teacher.run` that only writes each periodic line (done/total, tokens, $,
    req/s, ETA) to the run's log: for units mapped onto a task runner (maybe another process), while the
    flow moves the phase's artifact. Holds nothing, so it pickles to a Dask worker."""

    def __call__(self, p: Any) -> None:   # p: primer.teacher.TeacherProgress
        if p.log_due:
            _run_log().info("%s", redact(p.line()))


class PhaseProgress:
    """The `progress` callback for `Teacher.run` / a stage unit calling the teacher: a progress artifact at
    answered / requested, and each periodic line (done/total, tokens, $, req/s, ETA) in the run's log
    (Prefect's run logger inside a run, else the `primer` logger). Call `done()` when the phase ends."""

    def __init__(self, key: str, description: str = ""):
        self.artifact = Progress(key, description, min_step=1.0, min_interval_s=1.0)
        self.log: Any = _run_log()

    def __call__(self, p: Any) -> None:   # p: primer.teacher.TeacherProgress
        self.artifact.update(p.fraction, force=p.log_due)
        if p.log_due:
            self.log.info("%s", redact(p.line()))

    def done(self) -> None:
        self.artifact.done()


def with_progress(fn: Any, key: str, description: str = "") -> Any:
    """`fn` (a stage unit taking a `progress` callback) with that callback wired to a `PhaseProgress`:
    the `key` progress artifact, ending at 100 when `fn` returns, and the periodic teacher lines in the run's
    log. The wrapper's signature leaves `progress` out (a Prefect task binds its parameters from it)."""
    import functools
    import inspect

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        progress = PhaseProgress(key, description)
        out = fn(*args, progress=progress, **kwargs)
        progress.done()
        return out

    sig = inspect.signature(fn)
    run.__signature__ = sig.replace(parameters=[p for p in sig.parameters.values() if p.name != "progress"])  # type: ignore[attr-defined]
    return run


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Render rows as a GitHub-flavoured markdown table (for summaries)."""
    if not rows:
        return "_(none)_\n"
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        out.append("| " + " | ".join(str(_clean(row.get(c, ""))) for c in cols) + " |")
    return "\n".join(out) + "\n"
