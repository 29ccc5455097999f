"""Judging teacher answers: code blocks, refusals, textbook bounds, and exercise parsing.

Every rejection is a short snake_case reason (counted, kept in the drops table) plus a human detail.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass
from typing import Any

FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)
PY_LANGS = {"", "python", "py", "python3", "pycon"}
REFUSAL = re.compile(
    r"(I'?m sorry|I am sorry|I apologi[sz]e|I can(?:not|'t|’t) (?:help|assist|provide|comply|do that|write)"
    r"|As an AI(?: language model)?|I'?m unable to|I am unable to|I won'?t be able to|"
    r"against (?:my|our) (?:guidelines|policy))", re.IGNORECASE)
PREAMBLE = re.compile(r"^(?:sure|certainly|of course|absolutely|here(?:'s| is))\b[^\n]{0,160}[:!.]\s*\n",
                      re.IGNORECASE)


@dataclass
class Verdict:
    ok: bool
    text: str = ""
    reason: str = ""
    detail: str = ""


def code_blocks(text: str) -> list[str]:
    """Python fenced blocks (```python, ```py or unlabelled), in order."""
    return [body for lang, body in FENCE.findall(text or "") if lang.lower() in PY_LANGS]


def _as_source(block: str) -> str:
    """A REPL transcript (>>> lines) becomes the code it runs; anything else is returned as is."""
    lines = block.splitlines()
    if any(line.lstrip().startswith(">>>") for line in lines[:3]):
        return "\n".join(line.lstrip()[4:] for line in lines if line.lstrip().startswith((">>>", "...")))
    return block


def check_code(block: str) -> str | None:
    """None if the block parses, else the error message."""
    try:
        ast.parse(_as_source(block))
        return None
    except SyntaxError as e:
        return f"{e.msg} (line {e.lineno})"
    except ValueError as e:  # null bytes
        return str(e)


def is_refusal(text: str) -> bool:
    return bool(REFUSAL.search(text[:400]))


def validate_textbook(text: str | None, finish_reason: str | None, *, min_chars: int, max_chars: int,
                      min_code_blocks: int) -> Verdict:
    if text is None or not text.strip():
        return Verdict(False, reason="empty")
    text = PREAMBLE.sub("", text.strip(), count=1).strip()
    if is_refusal(text):
        return Verdict(False, reason="refusal", detail=text[:160])
    if finish_reason == "length":
        return Verdict(False, reason="truncated", detail="the teacher hit max_tokens")
    if finish_reason == "content_filter":
        return Verdict(False, reason="content_filter")
    if len(text) < min_chars:
        return Verdict(False, reason="too_short", detail=f"{len(text)} < {min_chars} chars")
    if len(text) > max_chars:
        return Verdict(False, reason="too_long", detail=f"{len(text)} > {max_chars} chars")
    if text.count("```") % 2:
        return Verdict(False, reason="unclosed_code_block")
    blocks = code_blocks(text)
    if len(blocks) < min_code_blocks:
        return Verdict(False, reason="no_code", detail=f"{len(blocks)} < {min_code_blocks} Python blocks")
    for i, block in enumerate(blocks):
        err = check_code(block)
        if err:
            return Verdict(False, reason="code_syntax_error", detail=f"block {i + 1}: {err}")
    return Verdict(True, text=text)


# ---- exercises -----------------------------------------------------------------------------------------

@dataclass
class Exercise:
    function_name: str
    prompt: str          # imports + signature + docstring
    solution: str        # the body (and any helpers after it): prompt + "\n" + solution is the program
    tests: str

    @property
    def program(self) -> str:
        return f"{self.prompt}\n{self.solution}"


def _find_function(tree: ast.Module, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return node
    return None


def _first_function(tree: ast.Module) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return node
    return None


def _docstring_end(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int | None:
    if fn.body and isinstance(fn.body[0], ast.Expr) and isinstance(getattr(fn.body[0], "value", None),
                                                                     ast.Constant) \
            and isinstance(fn.body[0].value.value, str):
        return fn.body[0].end_lineno
    return None


def parse_exercise(text: str | None, finish_reason: str | None = None,
                   expected_name: str | None = None) -> tuple[Exercise | None, str, str]:
    """(exercise, "", "") or (None, reason, detail)."""
    if text is None or not text.strip():
        return None, "empty", ""
    if is_refusal(text):
        return None, "refusal", text[:160]
    if finish_reason == "length":
        return None, "truncated", "the teacher hit max_tokens"
    blocks = code_blocks(text)
    if len(blocks) < 3:
        return None, "malformed_exercise", f"expected 3 Python blocks, got {len(blocks)}"
    p_src, s_src, t_src = (textwrap.dedent(b).strip("\n") for b in blocks[:3])
    trees = []
    for label, src in (("exercise", p_src), ("solution", s_src), ("tests", t_src)):
        try:
            trees.append(ast.parse(src))
        except SyntaxError as e:
            return None, "code_syntax_error", f"{label}: {e.msg} (line {e.lineno})"
    p_tree, s_tree, t_tree = trees
    fn = (_find_function(p_tree, expected_name) if expected_name else None) or _first_function(p_tree)
    if fn is None:
        return None, "no_function", "the exercise block defines no function"
    name = fn.name
    doc_end = _docstring_end(fn)
    if doc_end is None:
        return None, "no_docstring", f"{name} has no docstring"
    p_lines = p_src.splitlines()
    prompt_lines = p_lines[:doc_end]
    sfn = _find_function(s_tree, name)
    if sfn is None:
        return None, "solution_name_mismatch", f"the solution does not define {name}"
    s_lines = s_src.splitlines()
    s_doc_end = _docstring_end(sfn)
    body_nodes = sfn.body[1:] if s_doc_end is not None else sfn.body
    if not body_nodes:
        return None, "empty_solution", f"{name} has no body"
    body_start = body_nodes[0].lineno - 1
    if getattr(body_nodes[0], "decorator_list", None):
        body_start = min(d.lineno for d in body_nodes[0].decorator_list) - 1
    body = textwrap.dedent("\n".join(s_lines[body_start:sfn.end_lineno]))
    indent = re.match(r"\s*", p_lines[fn.body[0].lineno - 1]).group(0) or "    "
    solution = textwrap.indent(body, indent)
    # imports and helpers of the solution block: imports go with the prompt, helpers after the function
    prompt_imports = {ast.unparse(n) for n in p_tree.body if isinstance(n, (ast.Import, ast.ImportFrom))}
    extra_imports, helpers = [], []
    for node in s_tree.body:
        if node is sfn:
            continue
        decorators = getattr(node, "decorator_list", None) or []
        start = min([node.lineno] + [d.lineno for d in decorators]) - 1
        seg = "\n".join(s_lines[start:node.end_lineno])
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if ast.unparse(node) not in prompt_imports:
                extra_imports.append(seg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign)):
            helpers.append(seg)
    prompt = "\n".join(extra_imports + ([""] if extra_imports and not prompt_lines[0].startswith(("import", "from"))
                                        else []) + prompt_lines).strip("\n")
    if helpers:
        solution = solution + "\n\n\n" + "\n\n\n".join(helpers)
    ex = Exercise(function_name=name, prompt=prompt, solution=solution, tests=t_src)
    try:
        ast.parse(ex.program)
    except SyntaxError as e:
        return None, "assembly_error", f"prompt + solution do not parse: {e.msg} (line {e.lineno})"
    called = {n.id for n in ast.walk(t_tree) if isinstance(n, ast.Name)} | \
             {n.attr for n in ast.walk(t_tree) if isinstance(n, ast.Attribute)}
    if name not in called:
        return None, "tests_do_not_call_function", f"the tests never use {name}"
    if not any(isinstance(n, ast.Assert) for n in ast.walk(t_tree)) and \
            not any(isinstance(n, ast.Call) and getattr(n.func, "attr", "").startswith("assert")
                    for n in ast.walk(t_tree)):
        return None, "tests_without_asserts", "the tests assert nothing"
    return ex, "", ""


def with_test_calls(tests: str) -> str:
    """The tests plus explicit calls of every `test*` function they define (pytest-style tests run too)."""
    try:
        tree = ast.parse(tests)
    except SyntaxError:
        return tests
    names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test")
             and not n.args.args]
    return tests + ("\n\n" + "\n".join(f"{n}()" for n in names) + "\n" if names else "\n")


def normalize_ws(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def summarize_row(row: dict[str, Any], limit: int = 1500) -> str:
    text = row.get("text", "")
    return text if len(text) <= limit else text[:limit] + "\n…"
