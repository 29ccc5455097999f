"""Checkpoint selection: score every checkpoint of a run, pick one by a documented rule.

Signals: validation loss (from each checkpoint's manifest, computed by training) and greedy pass@1 on the
MBPP **validation** split (task ids 511-600). The test split (11-510) and HumanEval are never read here:
`SELECTION_SPLIT` is the only split this module loads, and every problem's task id is checked against it.

Rules (`select.rule`):
- `pass_then_loss` (default): highest MBPP-validation pass@1; ties -> lowest validation loss (a checkpoint
  without one ranks last); still tied -> the latest step.
- `loss`: lowest validation loss; ties -> the latest step (pass@1 is still computed and reported).
"""

from __future__ import annotations

import math
from typing import Any, Callable

from primer.scoring import mbpp

SELECTION_BENCHMARK = "mbpp"
SELECTION_SPLIT = "validation"
VALIDATION_IDS = mbpp.SPLITS[SELECTION_SPLIT]      # 511..600
RULES = {
    "pass_then_loss": "highest MBPP-validation pass@1 (greedy); ties -> lowest validation loss; then the latest step",
    "loss": "lowest validation loss; ties -> the latest step",
}


def _loss(c: dict[str, Any]) -> float:
    v = c.get("val_loss")
    return math.inf if v is None else float(v)


def rank_key(c: dict[str, Any], rule: str) -> tuple:
    """Sort key: the smallest is chosen."""
    if rule == "pass_then_loss":
        return (-(c.get("pass@1") or 0.0), _loss(c), -c["step"])
    if rule == "loss":
        return (_loss(c), -c["step"])
    raise ValueError(f"unknown selection rule {rule!r}; choose from {sorted(RULES)}")


def choose(candidates: list[dict[str, Any]], rule: str) -> tuple[dict[str, Any], str]:
    """(chosen candidate, one-sentence reason)."""
    if not candidates:
        raise ValueError("no checkpoints to choose from")
    ranked = sorted(candidates, key=lambda c: rank_key(c, rule))
    best = ranked[0]
    why = f"step {best['step']}: MBPP-val pass@1 {_fmt(best.get('pass@1'))}, val loss {_fmt(best.get('val_loss'))}"
    if len(ranked) > 1:
        second = ranked[1]
        if rule == "pass_then_loss":
            if (best.get("pass@1") or 0) > (second.get("pass@1") or 0):
                tie = "the highest MBPP-validation pass@1"
            elif _loss(best) < _loss(second):
                tie = f"tied on pass@1 with {_ties(ranked, 'pass@1')} checkpoint(s); lowest validation loss"
            else:
                tie = "tied on pass@1 and validation loss; latest step"
        else:
            tie = "lowest validation loss" if _loss(best) < _loss(second) else "tied on validation loss; latest step"
        why += f" — {tie} (runner-up step {second['step']}: pass@1 {_fmt(second.get('pass@1'))}, " \
               f"val loss {_fmt(second.get('val_loss'))})"
    return best, why


def _ties(ranked: list[dict[str, Any]], key: str) -> int:
    return sum(1 for c in ranked if (c.get(key) or 0) == (ranked[0].get(key) or 0))


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def selection_problems(prompt_format: str, limit: int, *, mbpp_path: str = "", mbpp_tasks=None):
    """The MBPP validation problems used for selection (first `limit`; 0 = all 90). Test tasks never appear."""
    from primer.scoring.harness import load_problems

    problems = load_problems(SELECTION_BENCHMARK, SELECTION_SPLIT, prompt_format, limit=limit, mbpp_path=mbpp_path,
                             mbpp_tasks=mbpp_tasks)
    bad = [p.task_id for p in problems if int(p.task_id) not in VALIDATION_IDS]
    if bad:
        raise AssertionError(f"checkpoint selection must only use MBPP validation tasks; got {bad[:5]}")
    return problems


def score_candidates(checkpoints: list[dict[str, Any]], make_backend: Callable[[dict[str, Any]], Any], problems,
                     *, prompt_format: str, max_new_tokens: int, sandbox=None, limits=None,
                     on_progress: Callable[[float], None] | None = None) -> tuple[list[dict[str, Any]], list]:
    """Greedy MBPP-validation pass@1 of every checkpoint. Returns (candidates, per-checkpoint EvalRuns)."""
    from primer.scoring.harness import evaluate

    candidates, runs = [], []
    for i, ckpt in enumerate(checkpoints):
        backend = make_backend(ckpt)
        run = evaluate(backend, SELECTION_BENCHMARK, SELECTION_SPLIT, prompt_format, 1, temperature=0.0,
                       max_new_tokens=max_new_tokens, problems=problems, sandbox=sandbox, limits=limits)
        assert all(int(s.task_id) in VALIDATION_IDS for s in run.samples)
        del backend
        candidates.append({"step": ckpt["step"], "uri": ckpt["uri"], "weights": ckpt.get("weights"),
                           "val_loss": ckpt.get("val_loss"), "train_loss": ckpt.get("train_loss"),
                           "tokens": ckpt.get("tokens"), "pass@1": run.summary["pass@1"],
                           "n_tasks": run.summary["n_tasks"], "n_passed": run.summary["n_passed"],
                           "errors": run.summary["errors"]})
        runs.append(run)
        if on_progress:
            on_progress((i + 1) / len(checkpoints))
    return candidates, runs
