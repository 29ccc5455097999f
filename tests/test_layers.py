"""The layers point one way: flows/ -> tasks/ -> primer/ -> model/, with no import cycles.

Walks every module's syntax tree (imports inside functions count too: a lazy import is still an arrow)
and fails naming the file, the line and the rule it breaks. See docs/architecture.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "primer", "tasks", "flows")
# The one module outside flows/ allowed to import flows: the CLI's command table.
FLOW_IMPORTERS = {"primer.cli"}
# What each layer may import of ours.
ALLOWED = {
    "model": {"model"},
    "primer": {"primer", "model"},
    "tasks": {"tasks", "primer", "model"},
    "flows": {"flows", "tasks", "primer", "model"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def our_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(imported module of ours, line) for every import in the file, resolved to a known module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from a.b import c` imports a.b.c when c is a module, else a.b
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target.split(".")[0] in PACKAGES:
                found.append((target, node.lineno))
    return found


def graph() -> dict[str, list[tuple[str, int]]]:
    modules = our_modules()
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def layer_problems(imports: dict[str, list[tuple[str, int]]]) -> list[str]:
    problems = []
    for name, edges in imports.items():
        layer = name.split(".")[0]
        for target, line in edges:
            top = target.split(".")[0]
            if top == "flows" and layer != "flows" and name not in FLOW_IMPORTERS:
                problems.append(f"{name}:{line} imports {target}: only the CLI's command table imports flows")
            elif top not in ALLOWED[layer] and not (top == "flows" and name in FLOW_IMPORTERS):
                problems.append(f"{name}:{line} imports {target}: {layer}/ may import only "
                                f"{', '.join(sorted(ALLOWED[layer]))}")
    return problems


def test_every_import_points_down_the_layers():
    problems = layer_problems(graph())
    assert not problems, "layer violations:\n" + "\n".join(problems)


def strongly_connected(nodes: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the components with more than one module are import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    counter = 0
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(nodes[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(nodes[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    item = stack.pop()
                    on_stack.discard(item)
                    component.append(item)
                    if item == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def test_no_import_cycles():
    edges = {name: {t for t, _ in targets if t != name} for name, targets in graph().items()}
    cycles = strongly_connected(edges)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("module, target, rule", [
    ("primer.store", "tasks.pack", "primer/ may import only"),
    ("model.phi", "primer.store", "model/ may import only"),
    ("tasks.pack", "flows.pack", "only the CLI's command table imports flows"),
])
def test_the_check_catches_a_violation(module, target, rule):
    """The rule must be able to fail: an upward arrow is reported, naming the file and line."""
    (problem,) = layer_problems({module: [(target, 7)]})
    assert rule in problem and f"{module}:7" in problem


def test_the_walk_sees_lazy_and_relative_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from tasks.pack import x\nfrom . import store\n")
    known = {"tasks.pack", "primer.store", "primer.probe"}
    assert sorted(imports_of("primer.probe", probe, known)) == [("primer.store", 3), ("tasks.pack", 2)]


def test_the_cycle_check_catches_a_cycle():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
