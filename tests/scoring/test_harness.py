"""The harness is checked with fake backends: canonical solutions score 100%, wrong code 0%, pass@k is the
unbiased estimator, splits are by task id and every result names its prompt format."""

from __future__ import annotations

import pytest

from primer.scoring import mbpp
from primer.scoring.metrics import pass_at_k
from primer.scoring import cut_at_stops, evaluate, load_problems
from primer.scoring.conventions import HUMANEVAL_STOPS
from primer.scoring.harness import write_parquet




class TableBackend:
    """Answers each prompt from a table (prompt -> list of n completions), recording what it was asked."""

    name = "table"

    def __init__(self, answers):
        self.answers, self.calls = answers, []

    def fingerprint(self):
        return {"backend": "table"}

    def generate(self, prompts, *, max_new_tokens, stop, temperature, top_p, n):
        self.calls.append({"prompts": list(prompts), "stop": list(stop), "n": n, "temperature": temperature})
        return [list(self.answers(p, n)) for p in prompts]


def test_humaneval_canonical_solutions_score_100_and_wrong_code_0(sandbox):
    problems = load_problems("humaneval", "test", "humaneval")
    ref = {p.prompt: p.reference for p in problems}
    good = evaluate(TableBackend(lambda p, n: [ref[p]] * n), "humaneval", "test", "humaneval", problems=problems,
                    sandbox=sandbox)
    assert good.summary["n_tasks"] == 164 and good.summary["pass@1"] == 1.0
    assert good.summary["prompt_format"] == "humaneval" and good.summary["sampling"]["greedy"] is True
    assert good.summary["stop"] == list(HUMANEVAL_STOPS["bigcode"])

    wrong = TableBackend(lambda p, n: ["    raise NotImplementedError('wrong')\n"] * n)
    bad = evaluate(wrong, "humaneval", "test", "humaneval", limit=20, sandbox=sandbox)
    assert bad.summary["pass@1"] == 0.0 and bad.summary["n_tasks"] == 20
    assert {s.error_kind for s in bad.samples} == {"tests:NotImplementedError"}
    assert wrong.calls[0]["stop"] == list(problems[0].stop)

    broken = evaluate(TableBackend(lambda p, n: ["    return (\n"]), "humaneval", "test", "humaneval", limit=3,
                      sandbox=sandbox)
    assert broken.summary["pass@1"] == 0.0 and broken.samples[0].error_kind == "code:SyntaxError"


FENCE_TAIL = "\n```\n\nThis function returns the sum of the list.\n"
DECORATED_TAIL = "\n\n@functools.lru_cache(maxsize=None)\ndef helper(n):\n    return n\n"


@pytest.mark.parametrize("tail,name", [(FENCE_TAIL, "fence"), (DECORATED_TAIL, "decorator")])
def test_correct_body_followed_by_a_fence_or_a_decorated_helper_passes(sandbox, tail, name):
    """Under the Codex paper's stops the completion runs on into the fence / the decorator line and is a
    SyntaxError; bigcode's stops (the default) cut at `\\n```` and `\\n@`; so does the evalplus sanitizer."""
    codex = load_problems("humaneval", "test", "humaneval", limit=4, stops="codex")
    bigcode = load_problems("humaneval", "test", "humaneval", limit=4)
    answers = TableBackend(lambda p, n: [next(q.reference for q in bigcode if q.prompt == p) + tail])
    cut = evaluate(answers, "humaneval", "test", "humaneval", problems=bigcode, sandbox=sandbox)
    assert cut.summary["pass@1"] == 1.0, cut.summary["errors"]
    uncut = evaluate(answers, "humaneval", "test", "humaneval", problems=codex, sandbox=sandbox)
    if name == "fence":
        assert uncut.summary["pass@1"] == 0.0 and set(uncut.summary["errors"]) == {"code:SyntaxError"}
    else:  # the codex stops cut at "\ndef", leaving the dangling decorator
        assert uncut.summary["pass@1"] == 0.0 and set(uncut.summary["errors"]) == {"code:SyntaxError"}
    sanitized = evaluate(answers, "humaneval", "test", "humaneval", problems=codex, sandbox=sandbox,
                         sanitizer="evalplus")
    assert sanitized.summary["pass@1"] == 1.0, sanitized.summary["errors"]


def test_evalplus_sanitizer_keeps_the_entry_point_and_what_it_needs():
    from primer.scoring.conventions import sanitize

    code = ("import math\nfrom typing import List\n\ndef helper(x):\n    return x + OFFSET\n\n"
            "@functools.lru_cache\ndef unused():\n    pass\n\nOFFSET = 3\n\ndef f(a: List[int]) -> int:\n"
            "    return helper(a[0])\n\nprint(f([1]))\nassert f([1]) == 4\nif __name__ == '__main__':\n    f([2])\n"
            "```\nThat is all.")
    out = sanitize(code, "f")
    assert "def f(" in out and "def helper(" in out and "OFFSET = 3" in out and "import math" in out
    assert "unused" not in out and "print(" not in out and "assert" not in out and "__main__" not in out
    fenced = sanitize("Here it is:\n```python\n@dec\ndef g():\n    return 1\n```\nDone.", "g")
    assert fenced == "@dec\ndef g():\n    return 1\n"


@pytest.mark.parametrize("fmt", ["austin3shot", "docstring_first_test"])
def test_mbpp_validation_references_pass_in_both_formats(sandbox, fmt, mbpp_format_path):
    problems = load_problems("mbpp", "validation", fmt, mbpp_path=mbpp_format_path)
    assert [int(p.task_id) for p in problems] == list(range(511, 601))
    ref = {p.prompt: p.reference for p in problems}
    # the model's raw completion: austin3shot answers end with [DONE] and more text the harness must cut
    tail = "\n[BEGIN]\nnonsense(" if fmt == "austin3shot" else "\nassert False\n"
    run = evaluate(TableBackend(lambda p, n: [ref[p] + tail]), "mbpp", "validation", fmt, problems=problems,
                   sandbox=sandbox)
    failed = {s.task_id for s in run.samples if not s.passed}
    assert failed == set()
    assert all(s.prompt_format == fmt and s.split == "validation" for s in run.samples)
    if fmt == "austin3shot":
        assert problems[0].prompt.count("[BEGIN]") == 4 and problems[0].prompt.endswith("[BEGIN]\n")
        assert problems[0].stop == ("[DONE]",)


def test_mbpp_splits_are_by_task_id(mbpp_format_tasks):
    tasks = mbpp_format_tasks
    test = load_problems("mbpp", "test", "docstring_first_test", mbpp_tasks=tasks)
    val = load_problems("mbpp", "validation", "docstring_first_test", mbpp_tasks=tasks, limit=7)
    assert [int(p.task_id) for p in test] == list(range(11, 511))
    assert [int(p.task_id) for p in val] == list(range(511, 518))
    with pytest.raises(ValueError, match="no split"):
        load_problems("mbpp", "train", "austin3shot", mbpp_tasks=tasks)
    with pytest.raises(ValueError, match="prompt format"):
        load_problems("humaneval", "test", "austin3shot")


def test_sampled_pass_at_k_is_the_unbiased_estimator(sandbox, tmp_path):
    problems = load_problems("humaneval", "test", "humaneval", limit=4)
    correct = {p.prompt: (i, p.reference) for i, p in enumerate(problems)}  # problem i: i of 5 samples pass

    def answers(prompt, n):
        i, ref = correct[prompt]
        return [ref if j < i else "    return None  # wrong\n" for j in range(n)]

    run = evaluate(TableBackend(answers), "humaneval", "test", "humaneval", n_samples=5, temperature=0.8,
                   problems=problems, sandbox=sandbox, ks=(1, 2, 5, 10))
    s = run.summary
    assert s["sampling"] == {"greedy": False, "n_samples": 5, "temperature": 0.8, "top_p": 0.95, "max_new_tokens": 128}
    for k in (1, 2, 5):
        assert s[f"pass@{k}"] == pytest.approx(sum(pass_at_k(5, c, k) for c in range(4)) / 4)
    assert "pass@10" not in s  # undefined with 5 samples
    assert sorted((r.task_id, r.sample_index) for r in run.samples)[:2] == [("HumanEval/0", 0), ("HumanEval/0", 1)]
    write_parquet(run.rows(), tmp_path / "r.parquet")
    import pyarrow.parquet as pq

    t = pq.read_table(tmp_path / "r.parquet")
    assert t.num_rows == 20 and {"task_id", "prompt_format", "sample_index", "completion", "passed",
                                 "error_kind"} <= set(t.column_names)
    assert "duration_s" not in t.column_names  # a measurement: run facts, not results
    assert run.run_facts["sample_duration_s"]["max"] > 0 and "timing_s" not in s


def test_cut_at_stops():
    assert cut_at_stops("    return 1\n\ndef g():\n#x", ["\n#", "\ndef "]) == ("    return 1\n", "\ndef ")
    assert cut_at_stops("abc", ["x"]) == ("abc", None)
