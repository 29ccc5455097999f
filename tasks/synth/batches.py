"""Request batches: how one generation phase's teacher requests are cut into units of the stage's task
runner, and how the units' answers and usage are put back together (no Prefect here; the mapping itself is
`send_mapped` in tasks/synth/prefect_tasks.py).

A unit is at most `synth.batch_requests` requests with distinct ledger keys; each unit builds its own
Teacher and Ledger where it runs (a thread, or a Dask worker process), so what travels is the config and the
requests, and what comes back is the answers and a `TeacherUsage` as a dict. Answers go back in the order
of the requests, so the output is the same whatever the runner and the batch size.

A phase is cut into units only when they can run side by side: `synth.parallel_batches` > 1, no budget
cap and the online mode (`parallel`). Otherwise it is one unit, as one Teacher would send it:
- each unit reads the ledger when it starts, so units one after the other would only re-read it;
- a budget cap (`teacher.max_tokens_total` / `teacher.max_cost_usd`) is checked against the ledger plus the
  worst case of the requests in flight *in that unit*, so units side by side could overspend together;
- `teacher.mode=batch`: the Batch API client submits every provider batch before its first poll, which
  units waiting on each other would serialise.
With units, at most `synth.parallel_batches` are in flight at once (`window`), and the answers the ledger
already holds are taken where the phase is mapped (`answered`), once: a resumed phase maps units only for
what is left, instead of every unit reading the whole ledger to find that it has nothing to send.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any, Callable

from primer.teacher import Teacher, TeacherAnswer, TeacherProgress, TeacherRequest, TeacherUsage


def parallel(cfg: Any) -> bool:
    """Whether the phase is cut into units (see the module docstring)."""
    t = cfg.teacher
    return cfg.synth.parallel_batches > 1 and not (t.max_tokens_total or t.max_cost_usd) and t.mode != "batch"


def answered(teacher: Teacher, requests: list[TeacherRequest]) -> tuple[
        tuple[list[TeacherAnswer], dict[str, Any]], list[TeacherRequest]]:
    """((the answers `teacher`'s ledger already holds, their usage), the requests left to send). The usage
    counts them as requested and cached, with the ledger's totals as its snapshot, as a Teacher's run
    would; it goes to `merge` and `PhaseTally` beside the units' results."""
    usage = TeacherUsage()
    if teacher.ledger is None:
        return ([], asdict(usage)), requests
    teacher.ledger.load()
    known, left = teacher.split_cached(requests, usage)
    usage.requests = usage.cached   # split_cached counted the keys still to send as well: the units count those
    prompt, completion = teacher.ledger.totals()
    usage.ledger_tokens, usage.ledger_cost_usd = prompt + completion, teacher.ledger_cost()
    return (list(known.values()), asdict(usage)), left


def split(cfg: Any, requests: list[TeacherRequest]) -> list[list[TeacherRequest]]:
    """The phase's units: requests with distinct keys (first one wins, as the ledger would answer the
    rest), in order, `synth.batch_requests` at a time when `parallel`, else all in one unit."""
    first: dict[str, TeacherRequest] = {}
    for r in requests:
        first.setdefault(r.key, r)
    unique = list(first.values())
    if not unique:
        return []
    size = max(1, cfg.synth.batch_requests) if parallel(cfg) else len(unique)
    return [unique[i:i + size] for i in range(0, len(unique), size)]


def window(cfg: Any, units: int) -> int:
    """Units in flight at once."""
    return max(1, min(cfg.synth.parallel_batches, units)) if parallel(cfg) else 1


def merge(requests: list[TeacherRequest], results: list[tuple[list[TeacherAnswer], dict[str, Any]]],
          wall_s: float) -> tuple[list[TeacherAnswer], dict[str, Any]]:
    """(one answer per request, in order; the phase's usage): the units' usage summed, with the phase's
    wall time (units overlap, so their wall times do not add)."""
    by_key: dict[str, TeacherAnswer] = {}
    usage = TeacherUsage()
    for answers, used in results:
        by_key.update((a.key, a) for a in answers)
        usage.add(TeacherUsage(**used))
    usage.wall_s = wall_s
    return [by_key[r.key] for r in requests], asdict(usage)


def unit_label(phase: str, i: int, units: int) -> str:
    """The phase label in a unit's own teacher log lines: `textbooks 2/4` (the phase alone for one unit,
    whose lines are then the phase's)."""
    return phase if units == 1 else f"{phase} {i + 1}/{units}"


class PhaseTally:
    """The phase's progress as units finish: a `TeacherProgress` (done/total, tokens, $, req/s, ETA) for
    the flow's progress artifact after each unit, and its log line when there are several units or answers
    taken from the ledger before mapping (otherwise the one unit logs the phase's lines itself)."""

    def __init__(self, phase: str, units: list[list[TeacherRequest]],
                 progress: Callable[[TeacherProgress], None] | None, known: dict[str, Any] | None = None):
        self.phase, self.progress = phase, progress
        self.units = len(units)
        self.usage = TeacherUsage(**known) if known else TeacherUsage()   # answered from the ledger before mapping
        self.total = sum(len(u) for u in units) + self.usage.requests
        # The phase's lines are logged here unless its one unit's own lines are the whole phase's.
        self.logs = self.units > 1 or self.usage.requests > 0
        self.t0 = time.monotonic()
        self.report(log_due=self.logs and self.usage.requests > 0)   # where a resumed phase starts

    def add(self, used: dict[str, Any]) -> None:
        self.usage.add(TeacherUsage(**used))
        self.report(log_due=self.logs)

    def report(self, log_due: bool) -> None:
        if self.progress is None:
            return
        u = self.usage
        new = u.requests - u.cached
        rate = new / max(time.monotonic() - self.t0, 1e-9)
        left = self.total - u.requests
        self.progress(TeacherProgress(phase=self.phase, done=u.requests, total=self.total, cached=u.cached,
                                      tokens=u.prompt_tokens + u.completion_tokens, usd=u.cost_usd, rate=rate,
                                      eta_s=left / rate if rate > 0 else None, log_due=log_due))
