from tasks.synth.quality import dedup, distinct_ngrams, diversity_report
from tasks.synth.validate import code_blocks, parse_exercise, validate_textbook, with_test_calls
from tests.synth.scripted import exercise, textbook

KW = {"min_chars": 200, "max_chars": 20000, "min_code_blocks": 1}


def test_textbook_validation_reasons():
    good = textbook('about "loops"')
    assert validate_textbook(good, "stop", **KW).ok
    assert validate_textbook("Sure! Here is the section:\n" + good, "stop", **KW).text.startswith("# ")
    assert validate_textbook(textbook('about "x"', "syntax"), "stop", **KW).reason == "code_syntax_error"
    assert validate_textbook(textbook('about "x"', "short"), "stop", **KW).reason == "too_short"
    assert validate_textbook("I'm sorry, but I can't help with that.", "stop", **KW).reason == "refusal"
    assert validate_textbook(good, "length", **KW).reason == "truncated"
    assert validate_textbook("# T\n" + "word " * 100, "stop", **KW).reason == "no_code"
    assert validate_textbook(good + "\n```python\nx = 1\n", "stop", **KW).reason == "unclosed_code_block"
    assert validate_textbook(None, None, **KW).reason == "empty"
    assert validate_textbook(good, "stop", min_chars=10, max_chars=100, min_code_blocks=1).reason == "too_long"


def test_repl_blocks_are_accepted():
    assert len(code_blocks("```pycon\n>>> x = 1\n>>> x\n1\n```\n```text\nnot code\n```")) == 1
    text = "# T\n" + "word " * 60 + "\n```pycon\n>>> x = [1, 2]\n>>> len(x)\n2\n```\n"
    assert validate_textbook(text, "stop", **KW).ok


def test_parse_exercise_splits_prompt_and_solution():
    ex, reason, _ = parse_exercise(exercise("sum_evens"), "stop", "sum_evens")
    assert reason == "" and ex.function_name == "sum_evens"
    assert ex.prompt.startswith("def sum_evens(") and ex.prompt.rstrip().endswith('"""')
    assert ex.solution.startswith("    return") and "def " not in ex.solution
    ns: dict = {}
    exec(ex.program + "\n" + ex.tests, ns)


def test_parse_exercise_moves_imports_and_keeps_helpers():
    answer = ("```python\ndef f(s: str) -> int:\n    \"\"\"Count words.\"\"\"\n```\n"
              "```python\nimport re\n\ndef f(s: str) -> int:\n  \"\"\"Count words.\"\"\"\n  return _n(re.findall(r'\\w+', s))\n\n"
              "def _n(xs):\n  return len(xs)\n```\n```python\nassert f('a b') == 2\n```")
    ex, reason, detail = parse_exercise(answer, "stop", "f")
    assert reason == "", detail
    assert ex.prompt.startswith("import re") and ex.solution.startswith("    return _n(")
    ns: dict = {}
    exec(ex.program + "\n" + ex.tests, ns)


def test_parse_exercise_rejections():
    assert parse_exercise(exercise("g", "malformed"))[1] == "malformed_exercise"
    assert parse_exercise("I'm sorry, I cannot help with that.")[1] == "refusal"
    no_doc = "```python\ndef g(x):\n    pass\n```\n```python\ndef g(x):\n    return x\n```\n```python\nassert g(1) == 1\n```"
    assert parse_exercise(no_doc)[1] == "no_docstring"
    other = exercise("g").replace("def g(values: list[int]) -> int:\n    \"\"\"Return the sum of the even numbers in `values`.\n\n    >>> g([1, 2, 3, 4])\n    6\n    \"\"\"\n    return", "def h(values):\n    return", 1)
    assert parse_exercise(other)[1] in ("solution_name_mismatch", "")
    bad_tests = exercise("g").replace("assert g(", "assert len(")
    assert parse_exercise(bad_tests)[1] == "tests_do_not_call_function"


def test_with_test_calls_runs_pytest_style_functions():
    code = with_test_calls("def test_a():\n    assert False\n")
    try:
        exec(code, {})
    except AssertionError:
        pass
    else:
        raise AssertionError("test_a was not called")


def test_dedup_exact_and_near():
    a = textbook('about "a"')
    rows = [{"id": "1", "text": a}, {"id": "2", "text": a.replace("# ", "#  ")},
            {"id": "3", "text": a + " extra words at the end"}, {"id": "4", "text": textbook('about "b"')}]
    kept, dropped = dedup(rows, 0.8)
    assert [r["id"] for r in kept] == ["1", "4"]
    assert {(r["id"], reason) for r, reason, _ in dropped} == {("2", "duplicate"), ("3", "near_duplicate")}
    kept, _ = dedup(rows, 1.0)
    assert [r["id"] for r in kept] == ["1", "3", "4"]


def test_diversity_report():
    rows = [{"id": "1", "text": "a b c d", "topic": "t1", "audience": "x"},
            {"id": "2", "text": "a b c e", "topic": "t1", "audience": "y"}]
    rep = diversity_report(rows, ["t1", "t2"])
    assert rep["topic_coverage"] == 0.5 and rep["distinct_1"]["unique"] == 5
    assert distinct_ngrams(["a b a b"], 2) == {"unique": 2, "total": 3, "distinct": 0.6667}
