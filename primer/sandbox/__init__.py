"""Primer's single code executor (model completions and synthetic exercises). See docs/sandbox.md."""

from primer.sandbox.executor import (
    SAFE_ENV,
    ExecResult,
    Limits,
    Program,
    Sandbox,
    default_sandbox,
    run_many,
    run_program,
)

__all__ = ["SAFE_ENV", "ExecResult", "Limits", "Program", "Sandbox", "default_sandbox", "run_many", "run_program"]
