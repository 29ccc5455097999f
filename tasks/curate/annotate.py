"""Annotators: label a sample of documents with their educational value (0-10), as phi-1 did with GPT-4.

* `HeuristicAnnotator` — offline rules (documented below and in docs/curate.md) for runs without a teacher.
* `TeacherAnnotator` — asks any OpenAI-compatible endpoint through the shared `primer.teacher` client, with
  phi-1's question; answers are parsed robustly, and the teacher's ledger on the store means a re-run never
  pays twice for the same (content hash, prompt, model).

An `Annotation` is `score` in [0, 10] (None when the answer could not be used), a `label` (score >=
threshold) and a short `rationale`.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from tasks.curate.text import parse_python

PROMPT_VERSION = "phi1-edu-v1"
SYSTEM_PROMPT = "You are an experienced programming teacher who grades code for a course."
QUESTION = ("Determine the educational value of the following Python code for a student whose goal is to "
            "learn basic coding concepts. Consider clarity, self-containedness, meaningful names, comments "
            "and docstrings, and whether it teaches algorithmic or programming ideas rather than boilerplate "
            "or configuration.\n\nAnswer with one line of the form `Score: N` where N is an integer from 0 "
            "(no educational value) to 10 (excellent teaching material), then at most one sentence of reasons.")


def build_prompt(text: str, max_chars: int) -> str:
    body = text if len(text) <= max_chars else text[:max_chars] + "\n# ... (truncated)"
    return f"{QUESTION}\n\n```python\n{body}\n```"


_SCORE_PATTERNS = [
    re.compile(r"score\s*[:=]?\s*\**\s*(\d+(?:\.\d+)?)\s*(?:/\s*10|out of 10)?", re.IGNORECASE),
    re.compile(r"(\d+(?:\.\d+)?)\s*(?:/\s*10|out of 10)", re.IGNORECASE),
    re.compile(r"^\s*\**\s*(\d+(?:\.\d+)?)\s*\**\s*$", re.MULTILINE),
]


def parse_score(answer: str | None) -> float | None:
    """The 0-10 score in a teacher's answer, or None if there is none or it is out of range.

    Accepts `Score: 7`, `**Score:** 7/10`, `7 out of 10`, `I'd give it 8/10`, a bare `6`, JSON
    `{"score": 7}`; rejects refusals, empty answers and numbers outside [0, 10].
    """
    if not answer or not isinstance(answer, str):
        return None
    for pat in _SCORE_PATTERNS:
        m = pat.search(answer)
        if m:
            try:
                value = float(m.group(1))
            except ValueError:
                continue
            if 0.0 <= value <= 10.0 and math.isfinite(value):
                return value
            return None
    m = re.search(r"\"score\"\s*:\s*(\d+(?:\.\d+)?)", answer)
    if m and 0.0 <= float(m.group(1)) <= 10.0:
        return float(m.group(1))
    return None


@dataclass
class Annotation:
    score: float | None
    rationale: str = ""
    error: str = ""              # why the score is missing (malformed answer, refusal, failed request)
    extra: dict[str, Any] = field(default_factory=dict)


class Annotator(Protocol):
    name: str

    def annotate(self, texts: list[str], keys: list[str]) -> list[Annotation]: ...


# ------------------------------------------------------------------------------------ heuristic labeller


class HeuristicAnnotator:
    """Offline educational-value score from static features. Rules (start at 5, clamp to [0, 10]):

    +2 most functions/classes have docstrings (>= 60%); +1 some do (>= 25%)
    +1 comment lines are 5-35% of the code lines
    +1 functions are short on average (3-40 lines)
    +1 descriptive names (mean identifier length >= 5, few 1-letter names)
    -2 no function or class definitions (scripts, config, data)
    -2 mostly tests (test_* functions or unittest/pytest scaffolding)
    -1 very long file (> 1500 lines)
    -1 heavy on imports (> 25 import lines)
    -1 mostly private/dunder API (> 60% of functions start with '_')
    -1 long functions (any function > 150 lines)
    """

    name = "heuristic"

    def annotate(self, texts: list[str], keys: list[str]) -> list[Annotation]:
        return [self.score(t) for t in texts]

    def score(self, text: str) -> Annotation:
        lines = text.splitlines()
        code_lines = [ln for ln in lines if ln.strip()]
        comment_lines = [ln for ln in code_lines if ln.lstrip().startswith("#")]
        try:
            tree = parse_python(text)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return Annotation(0.0, "does not parse")
        defs, names = [], []
        for n in ast.walk(tree):
            cls = type(n)
            if cls is ast.Name:
                names.append(n.id)
            elif cls in (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef):
                defs.append(n)
        funcs = [n for n in defs if not isinstance(n, ast.ClassDef)]
        names += [f.name for f in funcs]
        score, why = 5.0, []

        def rule(delta: float, reason: str) -> None:
            nonlocal score
            score += delta
            why.append(f"{delta:+g} {reason}")

        if not defs:
            rule(-2, "no functions or classes")
        else:
            documented = sum(1 for d in defs if ast.get_docstring(d)) / len(defs)
            if documented >= 0.6:
                rule(2, "most definitions documented")
            elif documented >= 0.25:
                rule(1, "some definitions documented")
        if code_lines and 0.05 <= len(comment_lines) / len(code_lines) <= 0.35:
            rule(1, "commented")
        if funcs:
            lengths = [(f.end_lineno or f.lineno) - f.lineno + 1 for f in funcs]
            if 3 <= sum(lengths) / len(lengths) <= 40:
                rule(1, "short functions")
            if max(lengths) > 150:
                rule(-1, "very long function")
            tests = sum(1 for f in funcs if f.name.startswith("test"))
            if tests / len(funcs) > 0.5 or re.search(r"^\s*(import unittest|import pytest)", text, re.M):
                rule(-2, "test code")
            if sum(1 for f in funcs if f.name.startswith("_")) / len(funcs) > 0.6:
                rule(-1, "mostly private API")
        if names:
            mean_len = sum(map(len, names)) / len(names)
            single = sum(1 for n in names if len(n) == 1) / len(names)
            if mean_len >= 5 and single < 0.1:
                rule(1, "descriptive names")
        if len(lines) > 1500:
            rule(-1, "very long file")
        if sum(1 for ln in code_lines if ln.startswith(("import ", "from "))) > 25:
            rule(-1, "many imports")
        return Annotation(max(0.0, min(10.0, score)), "; ".join(why))


def make_annotator(cfg, teacher_cfg=None, store=None) -> Annotator:
    """The annotator named by `curate.annotator`."""
    if cfg.annotator == "heuristic":
        return HeuristicAnnotator()
    from tasks.curate.teacher_annotator import TeacherAnnotator

    return TeacherAnnotator(cfg, teacher_cfg, store)
