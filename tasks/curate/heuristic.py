"""The offline annotator: an additive 5-point rubric computed from static features of the code.

It mirrors the teacher's `rubric` prompt (annotation.RUBRIC_QUESTION) with rules a program can check, so
a run without a teacher still labels "educational value for a student learning basic coding concepts"
rather than "is a Python file". One point per criterion met (score = 2 x points, on the 0..10 scale):

1. does something: it parses and defines a function or class, or runs at least 3 statements.
2. practical concepts: a function with control flow (loop, branch or comprehension) that computes a
   value (`return`/`yield`), and fewer than half of the functions are plumbing (`__dunder__` methods,
   one-line delegations).
3. explained: at least half of the public functions/classes have docstrings (or 35% with comment lines
   >= 8% of the code), and the names are descriptive (mean identifier length >= 4, < 15% one-letter).
4. self-contained: definitions, <= 8 import statements and no relative imports, <= 40% private (`_x`) functions,
   <= 600 lines and no function longer than 80 lines.
5. textbook-like: a module docstring, examples of use (a `>>>` doctest, an `Example` section or an
   `if __name__ == "__main__":` demo) and short functions (mean <= 30 lines).

Test code (most functions named `test*`, or unittest/pytest scaffolding) gets at most 1 point.

Calibration (docs/curate.md, `test_heuristic_split_is_real`): with the default `label_threshold` 5.0
(>= 3 points) about a third of a hash sample of this Python's standard library and site-packages is
labelled educational; textbook-style modules score 3-5 and tests, package `__init__` re-exports,
settings and CLI glue 0-2.
"""

from __future__ import annotations

import ast
import re

from tasks.curate.annotation import Annotation
from tasks.curate.text import parse_python

_FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef)
_CONTROL = (ast.For, ast.AsyncFor, ast.While, ast.If, ast.ListComp, ast.SetComp, ast.DictComp,
            ast.GeneratorExp, ast.Try)
_EXAMPLE = re.compile(r"^\s*>>> |\bExamples?\b:?|^if __name__ == ['\"]__main__['\"]\s*:", re.M)
_TEST_SCAFFOLD = re.compile(r"^\s*(import unittest|import pytest|from unittest|from pytest)", re.M)
RUBRIC_VERSION = "heuristic-rubric-v2"


def _length(node: ast.AST) -> int:
    return (getattr(node, "end_lineno", None) or node.lineno) - node.lineno + 1


def _is_plumbing(fn: ast.AST) -> bool:
    """Dunder methods and one-statement delegations (`return self._x.y(...)`, `pass`)."""
    if fn.name.startswith("__") and fn.name.endswith("__"):
        return True
    body = [s for s in fn.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    return len(body) <= 1 and not any(isinstance(n, _CONTROL) for s in body for n in ast.walk(s))


class HeuristicAnnotator:
    """Offline educational-value score from static features (rules in the module docstring)."""

    name = "heuristic"

    def annotate(self, texts: list[str], keys: list[str]) -> list[Annotation]:
        return [self.score(t) for t in texts]

    def score(self, text: str) -> Annotation:
        try:
            tree = parse_python(text)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return Annotation(0.0, "does not parse")
        lines = text.splitlines()
        code_lines = [ln for ln in lines if ln.strip()]
        comments = sum(1 for ln in code_lines if ln.lstrip().startswith("#"))
        defs, funcs, names, imports, relative, statements = [], [], [], 0, False, 0
        for node in ast.walk(tree):
            cls = type(node)
            if cls is ast.Name:
                names.append(node.id)
            elif cls in _FUNCS or cls is ast.ClassDef:
                defs.append(node)
                names.append(node.name)
                if cls in _FUNCS:
                    funcs.append(node)
            elif cls is ast.Import or cls is ast.ImportFrom:
                imports += 1
                relative = relative or (cls is ast.ImportFrom and node.level > 0)
            if isinstance(node, ast.stmt):
                statements += 1
        points, why = 0, []

        def award(ok: bool, reason: str) -> None:
            nonlocal points
            if ok:
                points += 1
                why.append(f"+1 {reason}")

        public = [d for d in defs if not d.name.startswith("_")] or defs
        documented = sum(1 for d in public if ast.get_docstring(d)) / len(public) if public else 0.0
        lengths = [_length(f) for f in funcs]
        mean_len = sum(lengths) / len(lengths) if lengths else 0.0
        award(bool(defs) or statements >= 3, "does something")
        computes = any(any(isinstance(n, _CONTROL) for n in ast.walk(f))
                       and any(isinstance(n, (ast.Return, ast.Yield, ast.YieldFrom)) for n in ast.walk(f))
                       for f in funcs)
        plumbing = sum(1 for f in funcs if _is_plumbing(f)) / len(funcs) if funcs else 1.0
        award(computes and plumbing < 0.5, "practical concepts")
        mean_name = sum(map(len, names)) / len(names) if names else 0.0
        single = sum(1 for n in names if len(n) == 1) / len(names) if names else 1.0
        commented = bool(code_lines) and comments / len(code_lines) >= 0.08
        award((documented >= 0.5 or (documented >= 0.35 and commented)) and mean_name >= 4 and single < 0.15,
              "explained")
        private = sum(1 for f in funcs if f.name.startswith("_") and not f.name.endswith("__")) / len(funcs) \
            if funcs else 0.0
        award(bool(defs) and imports <= 8 and not relative and private <= 0.4 and len(lines) <= 600
              and (max(lengths) if lengths else 0) <= 80, "self-contained")
        award(bool(ast.get_docstring(tree)) and bool(_EXAMPLE.search(text)) and 0 < mean_len <= 30,
              "textbook-like")
        tests = sum(1 for f in funcs if f.name.startswith("test")) / len(funcs) if funcs else 0.0
        if (tests > 0.5 or _TEST_SCAFFOLD.search(text)) and points > 1:
            points = 1
            why.append("capped at 1: test code")
        return Annotation(2.0 * points, "; ".join(why) or "no criterion met", extra={"points": points})
