"""What an annotation is, the questions a teacher is asked, and how its answers are read.

Shared by both annotators (`heuristic.py`, `teacher_annotator.py`); it imports neither, so the annotators
depend on it and never on each other.

Two prompts (`curate.annotate_prompt`):

* `phi1` — phi-1's question: the educational value "for a student whose goal is to learn basic coding
  concepts", answered as `Score: N` with N in 0..10.
* `rubric` — a FineWeb-Edu style additive 5-point rubric adapted to code: one point per criterion met,
  answered as `Educational score: N` with N in 0..5. Scores are doubled onto the 0..10 scale, so
  `curate.label_threshold` means the same thing for both prompts.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

SYSTEM_PROMPT = "You are an experienced programming teacher who grades code for a course."

PHI1_QUESTION = (
    "Determine the educational value of the following Python code for a student whose goal is to "
    "learn basic coding concepts. Consider clarity, self-containedness, meaningful names, comments "
    "and docstrings, and whether it teaches algorithmic or programming ideas rather than boilerplate "
    "or configuration.\n\nAnswer with one line of the form `Score: N` where N is an integer from 0 "
    "(no educational value) to 10 (excellent teaching material), then at most one sentence of reasons.")

RUBRIC_QUESTION = (
    "Below is a Python file. Evaluate whether it has high educational value and could be useful in a "
    "course teaching basic coding concepts, using the additive 5-point scoring system described below. "
    "Points accumulate based on the satisfaction of each criterion:\n\n"
    "- Add 1 point if the file contains valid Python code that does something, even if it is "
    "configuration, boilerplate or tests.\n"
    "- Add another point if it addresses practical programming concepts (functions, loops, data "
    "structures), even if it lacks comments or depends on code defined elsewhere.\n"
    "- Award a third point if it is suitable for educational use and introduces key concepts: it is "
    "well structured, uses meaningful names and has docstrings or comments explaining what it does.\n"
    "- Grant a fourth point if it is self-contained and highly relevant to teaching programming, like an "
    "exercise or a tutorial example that a student can read top to bottom.\n"
    "- Bestow a fifth point if it is outstanding teaching material: clear explanations, examples of "
    "use, and an algorithm or idea explained step by step, like a page of a good textbook.\n\n"
    "After examining the file, briefly justify your total score in at most two sentences, then end "
    "with a line of the form `Educational score: N` where N is the total points (0 to 5).")

PROMPTS = {"phi1": ("phi1-edu-v1", PHI1_QUESTION, 10.0), "rubric": ("fineweb-edu-additive-v1", RUBRIC_QUESTION, 5.0)}


def prompt_version(kind: str = "phi1") -> str:
    return PROMPTS[kind][0]


def build_prompt(text: str, max_chars: int, kind: str = "phi1") -> str:
    body = text if len(text) <= max_chars else text[:max_chars] + "\n# ... (truncated)"
    return f"{PROMPTS[kind][1]}\n\n```python\n{body}\n```"


_SCORE_PATTERNS = [
    re.compile(r"score\s*[:=]?\s*\**\s*(\d+(?:\.\d+)?)\s*(?:/\s*10|out of 10)?", re.IGNORECASE),
    re.compile(r"(\d+(?:\.\d+)?)\s*(?:/\s*10|out of 10)", re.IGNORECASE),
    re.compile(r"^\s*\**\s*(\d+(?:\.\d+)?)\s*\**\s*$", re.MULTILINE),
]
_RUBRIC_PATTERN = re.compile(r"educational\s+score\s*[:=]?\s*\**\s*(\d+(?:\.\d+)?)", re.IGNORECASE)


def parse_score(answer: str | None, kind: str = "phi1") -> float | None:
    """The score in a teacher's answer on the 0-10 scale, or None if there is none or it is out of range.

    phi1: accepts `Score: 7`, `**Score:** 7/10`, `7 out of 10`, `I'd give it 8/10`, a bare `6`, JSON
    `{"score": 7}`. rubric: the last `Educational score: N` (0-5, doubled). Rejects refusals, empty answers
    and numbers outside the scale.
    """
    if not answer or not isinstance(answer, str):
        return None
    if kind == "rubric":
        found = _RUBRIC_PATTERN.findall(answer)
        if not found:
            return None
        value = float(found[-1])
        return 2.0 * value if 0.0 <= value <= 5.0 else None
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
    """`score` in [0, 10] (None when the answer could not be used) and a short `rationale`."""

    score: float | None
    rationale: str = ""
    error: str = ""              # why the score is missing (malformed answer, refusal, failed request)
    extra: dict[str, Any] = field(default_factory=dict)


class Annotator(Protocol):
    name: str

    def annotate(self, texts: list[str], keys: list[str]) -> list[Annotation]: ...
