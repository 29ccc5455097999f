"""Run each exercise's solution against its tests in the code sandbox (primer.sandbox)."""

from __future__ import annotations

from typing import Any

from tasks.synth.validate import with_test_calls


def failure_reason(result: Any) -> tuple[str, str]:
    """(short reason, detail) of a sandbox result that did not pass: e.g. ("failed:tests:AssertionError", ...),
    ("timeout", ...), ("error:sandbox_crash", ...)."""
    status = getattr(result, "status", "error")
    kind = getattr(result, "error_kind", None)
    reason = "timeout" if status == "timeout" else f"{status}:{kind}" if kind else status
    tail = (getattr(result, "stderr_tail", "") or getattr(result, "stdout_tail", "") or "").strip()
    detail = tail.splitlines()[-1][:300] if tail else ""
    return reason, detail


def verify_programs(items: list[tuple[str, str]], timeout_s: float, workers: int | None = None,
                    ) -> list[tuple[bool, str, str]]:
    """For (program, tests) pairs: (passed, failure_reason, failure_detail), in order."""
    if not items:
        return []
    from primer.sandbox import Program, run_many

    results = run_many([Program(code, with_test_calls(tests)) for code, tests in items], timeout_s=timeout_s,
                       workers=workers)
    out = []
    for r in results:
        if getattr(r, "passed", False):
            out.append((True, "", ""))
        else:
            out.append((False, *failure_reason(r)))
    return out
