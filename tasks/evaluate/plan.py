"""What an evaluation scores: the (benchmark, split, prompt format) runs of the settings, their problems, and
the conventions recorded with them."""

from __future__ import annotations

from typing import Any

from primer.errors import InputError
from primer.scoring.data_files import try_locate_mbpp
from primer.scoring.harness import Problem, load_problems
from primer.settings.evaluate import EvaluateConfig

MBPP_MISSING = "mbpp skipped: "


def plan(ev: EvaluateConfig, mbpp_path: str = "", mbpp_missing: str = "") -> tuple[list[tuple[str, str, str]], list[str]]:
    """(benchmark, split, prompt_format) runs, in order, and notes on what was skipped. MBPP is scored on its
    test split; without MBPP (see primer.scoring.data_files) it is skipped with a note rather than failing."""
    runs, notes = [], []
    for b in ev.benchmarks:
        if b == "humaneval":
            runs.append((b, "test", "humaneval"))
        elif b in ("humaneval+", "mbpp+"):   # base tests and base + plus tests, side by side, same completions
            fmt = "humaneval" if b == "humaneval+" else "docstring_first_test"
            runs.extend([(b, "base", fmt), (b, "plus", fmt)])
        elif mbpp_path:
            runs.extend(("mbpp", "test", f) for f in ev.mbpp_formats)
        else:
            notes.append(MBPP_MISSING + mbpp_missing)
    if not runs:
        raise InputError("evaluate: nothing to score. " + " ".join(notes))
    return runs, notes


def locate_mbpp(ev: EvaluateConfig) -> tuple[str, str]:
    """(MBPP location, "") or ("", why not), by the lookup every stage and test uses."""
    if "mbpp" not in ev.benchmarks:
        return "", ""
    return try_locate_mbpp(ev.mbpp_path)


def problem_sets(ev: EvaluateConfig, runs: list[tuple[str, str, str]], mbpp_path: str) -> list[list[Problem]]:
    out = []
    for bench, split, fmt in runs:
        plus_path = ev.humaneval_plus_path if bench == "humaneval+" else ev.mbpp_plus_path
        plus_sha = ev.humaneval_plus_sha256 if bench == "humaneval+" else ev.mbpp_plus_sha256
        out.append(load_problems(bench, split, fmt, limit=ev.limit, mbpp_path=mbpp_path,
                                 humaneval_path=ev.humaneval_path, stops=ev.humaneval_stops,
                                 plus_path=plus_path, plus_sha256=plus_sha))
    return out


def conventions(ev: EvaluateConfig) -> dict[str, Any]:
    """The scoring conventions of a run, recorded in every summary (docs/evaluate.md explains each)."""
    out: dict[str, Any] = {"humaneval_stops": ev.humaneval_stops, "sanitizer": ev.sanitizer,
                           "time_limit": ev.time_limit, "harness_cuts_at_stops": True}
    if ev.time_limit == "reference":
        out.update({"time_floor_s": ev.time_floor_s, "time_factor": ev.time_factor,
                    "rule": "max(time_floor_s, time_factor x reference runtime)"})
    else:
        out["timeout_s"] = ev.timeout_s
    return out
