"""HumanEval+ / MBPP+ in evalplus's data format: small files the tests build (never the real ones), pinned by
sha256, scored in the sandbox with base and plus tests side by side and evalplus's atol rule."""

from __future__ import annotations

import hashlib
import json

import pytest

from primer.errors import InputError
from primer.scoring import evalplus
from primer.scoring import humaneval as he
from primer.scoring.harness import evaluate, load_problems

from .test_harness import TableBackend

# HumanEval/2 truncate_number returns a float: `number % 1.0` differs from the reference in the last bits, which
# evalplus's rule accepts (atol 1e-6 for float outputs); a plus input where a shortcut breaks.
HE_INPUTS = {
    "HumanEval/0": ([[[1.0, 2.0, 3.0], 0.5], [[1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3]],
                    [[[1.0, 1.5], 0.6], [[10.0, 20.0, 10.05], 0.1], [[], 1.0]]),
    "HumanEval/2": ([[3.5], [1.25]], [[123.456], [0.999999]]),
}


def _write(path, records):
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return str(path), hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def humaneval_plus(tmp_path_factory):
    base = he.load_problems()
    recs = [{"task_id": tid, "prompt": base[tid].prompt, "entry_point": base[tid].entry_point,
             "canonical_solution": base[tid].canonical_solution, "base_input": b, "plus_input": p,
             "atol": 0, "contract": ""} for tid, (b, p) in HE_INPUTS.items()]
    return _write(tmp_path_factory.mktemp("heplus") / "HumanEvalPlus.jsonl", recs)


@pytest.fixture(scope="module")
def mbpp_plus(tmp_path_factory):
    recs = [{"task_id": f"Mbpp/{i}", "prompt": f'"""\nWrite a function to add {i} to a number.\nassert add_{i}(1) == '
                                              f'{i + 1}\n"""\n',
             "entry_point": f"add_{i}", "canonical_solution": f"def add_{i}(x):\n    return x + {i}",
             "base_input": [[1], [0]], "plus_input": [[10 ** 6], [-5]], "atol": 0} for i in (2, 3)]
    return _write(tmp_path_factory.mktemp("mbppplus") / "MbppPlus.jsonl", recs)


def test_references_pass_base_and_plus_and_a_shortcut_fails_only_plus(sandbox, humaneval_plus):
    path, sha = humaneval_plus
    runs = {}
    for split in ("base", "plus"):
        problems = load_problems("humaneval+", split, "humaneval", plus_path=path, plus_sha256=sha)
        assert [p.task_id for p in problems] == ["HumanEval/0", "HumanEval/2"]
        ref = {p.prompt: p.reference for p in problems}
        runs[split, "ref"] = evaluate(TableBackend(lambda p, n: [ref[p]]), "humaneval+", split, "humaneval",
                                      problems=problems, sandbox=sandbox)
        # passes the two base inputs of HumanEval/0 by a wrong rule (any gap < threshold among neighbours in the
        # given order), fails a plus input that is not sorted; HumanEval/2 by `% 1.0` (float rounding: atol)
        shortcut = {problems[0].prompt: "    return any(abs(a - b) < threshold for a, b in zip(numbers, numbers[1:]))\n",
                    problems[1].prompt: "    return number % 1.0\n"}
        runs[split, "cut"] = evaluate(TableBackend(lambda p, n: [shortcut[p]]), "humaneval+", split, "humaneval",
                                      problems=problems, sandbox=sandbox)
    assert runs["base", "ref"].summary["pass@1"] == runs["plus", "ref"].summary["pass@1"] == 1.0
    assert runs["base", "cut"].summary["pass@1"] == 1.0
    cut_plus = {s.task_id: s.passed for s in runs["plus", "cut"].samples}
    assert cut_plus == {"HumanEval/0": False, "HumanEval/2": True}  # 0.999999 % 1.0: equal within atol only


def test_atol_rule_inside_the_sandbox(sandbox):
    prog = evalplus.CHECKER + (
        "_check(0.1 + 0.2, 0.3, 0)\n"                 # float expected: atol 1e-6 applies
        "_check([1.0, 2.0000001], [1.0, 2.0], 0)\n"
        "_check(3, 3, 0)\n"
        "try:\n    _check(1, 1.0000001, 0)\nexcept AssertionError:\n    pass\nelse:\n    raise SystemExit(1)\n"
        "try:\n    _check([1, 2], (1, 2), 1e-3)\nexcept AssertionError:\n    pass\nelse:\n    raise SystemExit(1)\n"
        "_check(10.0004, 10.0, 1e-3)\n")
    assert sandbox.run(("", prog)).passed


def test_mbpp_plus_subset_and_prompts(sandbox, mbpp_plus):
    path, sha = mbpp_plus
    problems = load_problems("mbpp+", "plus", "docstring_first_test", plus_path=path, plus_sha256=sha)
    assert [p.task_id for p in problems] == ["Mbpp/2", "Mbpp/3"] and problems[0].entry_point == "add_2"
    ans = {p.prompt: [p.reference, f"def {p.entry_point}(x):\n    return x + 2 if x < 100 else x\n"] for p in problems}
    run = evaluate(TableBackend(lambda p, n: ans[p][:n]), "mbpp+", "plus", "docstring_first_test", n_samples=2,
                   temperature=0.5, problems=problems, sandbox=sandbox, ks=(1, 2))
    assert run.summary["pass@1"] == 0.5 and run.summary["pass@2"] == 1.0


def test_unpinned_or_altered_files_are_refused(humaneval_plus, tmp_path):
    path, sha = humaneval_plus
    with pytest.raises(InputError, match=rf"pin the file's sha256 .*{sha}"):
        load_problems("humaneval+", "base", "humaneval", plus_path=path, plus_sha256="")
    with pytest.raises(InputError, match="refused"):
        load_problems("humaneval+", "base", "humaneval", plus_path=path, plus_sha256="ab" * 32)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": "HumanEval/0", "prompt": "x"}\n')
    with pytest.raises(InputError, match=r"bad\.jsonl:1: not an evalplus record"):
        load_problems("humaneval+", "base", "humaneval", plus_path=str(bad),
                      plus_sha256=hashlib.sha256(bad.read_bytes()).hexdigest())
