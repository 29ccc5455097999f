"""Scoring conventions, each a named option recorded in every summary (docs/evaluate.md lists them):

* **stop sequences** for HumanEval (where a completion is cut; the harness cuts too, so a backend that ignores
  `stop` is scored the same way):
    - `bigcode`: bigcode-evaluation-harness's HumanEval stops `\\nclass`, `\\ndef`, `\\n#`, `\\n@`, `\\nprint`,
      `\\nif`, `\\n```` (default). `\\n@` cuts before a decorated helper and `\\n```` before a closing markdown
      fence; without them a correct body followed by either is a `code:SyntaxError`.
    - `codex`: the Codex paper's (Chen et al. 2021, section 2.3) `\\nclass`, `\\ndef`, `\\n#`, `\\nif`, `\\nprint`.
* **sanitizer** (`sanitize`): `none` (the program is prompt + completion as cut) or `evalplus`: a syntax-tree
  sanitizer in the manner of evalplus's `sanitize` -- the code inside a markdown fence if there is one, then
  the longest leading part that parses, then only the imports, the entry point and the top-level definitions
  it needs (tests, prints and `__main__` blocks the model went on to write are dropped).
* **time limits** (`time_limit`): `fixed` (`evaluate.timeout_s` for every program) or `reference`: per task
  max(`time_floor_s`, `time_factor` x the reference solution's measured runtime), as evalplus does (floor 1 s,
  factor 4 by default there and here).
"""

from __future__ import annotations

import ast
import re

HUMANEVAL_STOPS: dict[str, tuple[str, ...]] = {
    "bigcode": ("\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```"),
    "codex": ("\nclass", "\ndef", "\n#", "\nif", "\nprint"),
}
SANITIZERS = ("none", "evalplus")
TIME_LIMITS = ("fixed", "reference")

_FENCE_LINE = re.compile(r"^[ \t]*```[^\n]*$", re.M)
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def task_time_limit(reference_s: float, floor_s: float, factor: float) -> float:
    """evalplus's rule: max(floor, factor x the reference solution's runtime)."""
    return max(floor_s, factor * reference_s)


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
        return True
    except (SyntaxError, ValueError):
        return False


def longest_parsing_prefix(code: str) -> str:
    """The longest run of leading lines that parses (prose or a half-written line after the code goes)."""
    lines = code.split("\n")
    for end in range(len(lines), 0, -1):
        chunk = "\n".join(lines[:end])
        if _parses(chunk):
            return chunk
    return ""


def fenced_code(text: str, entry_point: str) -> str:
    """Of the parts between markdown fence lines (```python ... ```), the first that defines `entry_point`,
    else the first non-blank one; unfenced text is returned as is."""
    parts = _FENCE_LINE.split(text)
    if len(parts) == 1:
        return text
    for part in parts:
        if re.search(rf"\bdef\s+{re.escape(entry_point)}\s*\(", part):
            return part
    return next((p for p in parts if p.strip()), "")


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _defined(node: ast.stmt) -> list[str]:
    if isinstance(node, _DEFS):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def sanitize(code: str, entry_point: str) -> str:
    """Keep the imports, `entry_point` and the top-level definitions it reaches; drop everything else."""
    code = longest_parsing_prefix(fenced_code(code, entry_point))
    if not code.strip():
        return code
    tree = ast.parse(code)
    owners: dict[str, list[ast.stmt]] = {}
    for node in tree.body:
        for name in _defined(node):
            owners.setdefault(name, []).append(node)
    if entry_point not in owners:  # nothing to anchor on: keep the definitions, drop loose statements
        keep_nodes = {id(n) for n in tree.body if _defined(n)}
    else:
        keep_nodes, todo, seen = set(), [entry_point], set()
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            for node in owners.get(name, []):
                keep_nodes.add(id(node))
                todo.extend(n for n in _names(node) if n in owners)
    lines = code.split("\n")
    out = []
    for n in tree.body:
        if isinstance(n, (ast.Import, ast.ImportFrom)) or id(n) in keep_nodes:
            # from the first decorator (a definition's own lineno is its `def` line) to the end of the node
            first = min([d.lineno for d in getattr(n, "decorator_list", [])] + [n.lineno])
            out.append("\n".join(lines[first - 1:n.end_lineno]))
    return "\n".join(out) + "\n"


def entry_point_of_tests(tests: list[str] | tuple[str, ...], reference: str) -> str:
    """MBPP names no entry point: the first function the reference defines that the asserts call."""
    try:
        defined = [n.name for n in ast.parse(reference).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    except SyntaxError:
        defined = []
    called: list[str] = []
    for t in tests:
        try:
            called += [c.func.id for c in ast.walk(ast.parse(t)) if isinstance(c, ast.Call)
                       and isinstance(c.func, ast.Name)]
        except SyntaxError:
            continue
    return next((c for c in called if c in defined), defined[-1] if defined else "")
