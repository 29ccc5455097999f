"""Score completions in the sandbox: per-sample records and a pass@k summary (no model code here)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Sequence

from primer.evals.metrics import greedy_pass_at_1, summarize_pass_at_k
from primer.sandbox import Limits, Program, Sandbox, run_many


@dataclass(frozen=True)
class SampleResult:
    task_id: str
    completion: str
    prompt_format: str
    passed: bool
    status: str
    error_kind: str | None
    duration_s: float

    def as_dict(self) -> dict:
        return asdict(self)


def score_samples(samples: Sequence[tuple[str, str]], build: Callable[[str, str], Program], *,
                  prompt_format: str, sandbox: Sandbox | None = None, workers: int | None = None,
                  limits: Limits | None = None) -> list[SampleResult]:
    """``samples``: (task_id, completion) pairs; ``build(task_id, completion)`` makes the program."""
    programs = [build(tid, c) for tid, c in samples]
    lim = limits or Limits(timeout_s=5.0)
    if sandbox is not None:
        results = sandbox.run_many(programs, lim)
    else:
        results = run_many(programs, workers=workers, **{k: v for k, v in lim.__dict__.items()})
    return [SampleResult(str(tid), c, prompt_format, r.passed, r.status, r.error_kind, r.duration_s)
            for (tid, c), r in zip(samples, results)]


def summarize(results: Iterable[SampleResult], ks: Iterable[int] = (1, 10, 100), greedy: bool = False) -> dict:
    """pass@k over tasks (or greedy pass@1 when ``greedy``), with the prompt format(s) used."""
    results = list(results)
    by_task: dict[str, list[bool]] = defaultdict(list)
    for r in results:
        by_task[r.task_id].append(r.passed)
    formats = sorted({r.prompt_format for r in results})
    out: dict = {"prompt_format": formats[0] if len(formats) == 1 else formats, "n_tasks": len(by_task),
                 "n_samples": len(results)}
    if greedy:
        if any(len(v) != 1 for v in by_task.values()):
            raise ValueError("greedy pass@1 needs exactly one sample per task")
        out["pass@1"] = greedy_pass_at_1({k: v[0] for k, v in by_task.items()})
    else:
        out.update(summarize_pass_at_k(by_task, ks))
    return out
