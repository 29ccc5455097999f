"""The evaluate stage (tasks/evaluate) in-process: HumanEval+ beside HumanEval, conventions recorded, the
reference time-limit rule, batches giving the same records however they are cut."""

from __future__ import annotations

import pyarrow.parquet as pq

from primer.settings.evaluate import EvaluateConfig
from tasks.evaluate import evaluate_model, read_summary

from .test_evalplus import humaneval_plus  # noqa: F401  (fixture)
from .test_harness import TableBackend


def test_plus_beside_base_with_conventions_recorded(scoring_store, humaneval_plus, no_mbpp):  # noqa: F811
    from primer.scoring.harness import load_problems

    store, _, _ = scoring_store
    path, sha = humaneval_plus
    refs = {p.prompt: p.reference for p in load_problems("humaneval", "test", "humaneval")}
    backend = TableBackend(lambda p, n: [refs[p] + "\n```\nThat is the answer."])
    ev = EvaluateConfig(benchmarks=["humaneval", "humaneval+"], limit=3, humaneval_plus_path=path,
                        humaneval_plus_sha256=sha, sanitizer="evalplus", time_limit="reference",
                        time_floor_s=2.0, exec_batch=2, workers=2)
    manifest = evaluate_model(store, ev, backend=backend)
    summary = read_summary(store, manifest["uri"])
    assert [(r["benchmark"], r["split"]) for r in summary["runs"]] == [
        ("humaneval", "test"), ("humaneval+", "base"), ("humaneval+", "plus")]
    assert all(r["pass@1"] == 1.0 for r in summary["runs"]), [r["errors"] for r in summary["runs"]]
    assert set(manifest["headline"]) == {"humaneval/humaneval", "humaneval+/humaneval/base",
                                         "humaneval+/humaneval/plus"}
    # one generation for the evalplus file's two splits
    assert len(backend.calls) == 2
    conv = summary["conventions"]
    assert conv["humaneval_stops"] == "bigcode" and conv["sanitizer"] == "evalplus"
    assert conv["time_limit"] == "reference" and conv["time_floor_s"] == 2.0 and conv["time_factor"] == 4.0
    assert all(r["conventions"] == conv for r in summary["runs"])
    assert any("mbpp" in n for n in summary["notes"]) or "mbpp" not in ev.benchmarks
    rows = pq.read_table(store.to_path(f"{manifest['uri']}/results.parquet")).to_pylist()
    assert len(rows) == 3 + 2 + 2
    assert summary["contamination"] == {"reported": False}  # a table backend has no training documents


def test_batch_size_does_not_change_results(scoring_store, no_mbpp):
    from primer.scoring.harness import load_problems

    store, _, _ = scoring_store
    problems = load_problems("humaneval", "test", "humaneval", limit=5)
    good = {p.prompt for p in problems[::2]}
    refs = {p.prompt: p.reference for p in problems}

    def answers(p, n):
        return [refs[p] if p in good else "    return None\n"]

    outs = []
    for batch in (1, 3, 64):
        ev = EvaluateConfig(benchmarks=["humaneval"], limit=5, exec_batch=batch, workers=2)
        m = evaluate_model(store, ev, backend=TableBackend(answers))
        rows = pq.read_table(store.to_path(f"{m['uri']}/results.parquet")).to_pylist()
        outs.append([(r["task_id"], r["passed"], r["status"], r["error_kind"]) for r in rows])
        assert m["headline"]["humaneval/humaneval"]["pass@1"] == 0.6
    assert outs[0] == outs[1] == outs[2]
