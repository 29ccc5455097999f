"""select -> export -> evaluate as Prefect flows under a real Prefect server: outputs and artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from tests.conftest import flow_artifacts



def test_select_export_evaluate_flows(prefect_harness, scoring_store, mbpp_format_path):
    from flows.evaluate import evaluate
    from flows.export import export
    from flows.select import select

    store, run, _ = scoring_store
    overrides = {"store.root": store.cfg.root, "select.limit": 2, "select.max_new_tokens": 8,
                 "evaluate.mbpp_path": mbpp_format_path, "evaluate.limit": 2, "evaluate.max_new_tokens": 8,
                 "evaluate.workers": 2, "evaluate.device": "cpu", "export.name": "flow-test"}
    sel_state = select(profile="tiny", overrides=overrides, run=run["uri"], return_state=True)
    sel_uri = sel_state.result()
    sel = json.loads(Path(sel_uri, "manifest.json").read_text())
    assert sel["kind"] == "selection" and sel["split"] == "validation" and sel["chosen"]["step"] == 20

    export_state = export(profile="tiny", overrides=overrides, selection=sel_uri, return_state=True)
    release = export_state.result()
    card = Path(release, "README.md").read_text()
    assert "flow-test" in card and "MBPP validation" in card

    eval_state = evaluate(profile="tiny", overrides=overrides, release=release, return_state=True)
    uri = eval_state.result()
    summary = json.loads(Path(uri, "summary.json").read_text())
    assert [(r["benchmark"], r["split"], r["prompt_format"]) for r in summary["runs"]] == [
        ("humaneval", "test", "humaneval"), ("mbpp", "test", "austin3shot"), ("mbpp", "test", "docstring_first_test")]
    assert all(r["n_tasks"] == 2 and "pass@1" in r for r in summary["runs"])
    assert summary["sampling"]["greedy"] and summary["model"]["release_content_hash"]
    rows = pq.read_table(Path(uri, "results.parquet")).to_pylist()
    assert len(rows) == 6 and {"task_id", "prompt_format", "sample_index", "completion", "passed",
                               "error_kind"} <= set(rows[0])

    arts = {**flow_artifacts(sel_state.state_details.flow_run_id, ["select-candidates", "select-summary"]),
            **flow_artifacts(export_state.state_details.flow_run_id, ["export-summary"]),
            **flow_artifacts(eval_state.state_details.flow_run_id, ["evaluate-results", "evaluate-summary"])}
    assert set(arts) == {"select-candidates", "select-summary", "export-summary", "evaluate-results", "evaluate-summary"}
    assert "Chosen" in arts["select-summary"].data and "511-600" in arts["select-summary"].data
    md = arts["evaluate-summary"].data
    assert "50.6%" in md and "55.5%" in md and "29.0%" in md and "45.0%" in md and "docstring_first_test" in md

    # the CLI command reuses the finished evaluation
    from primer.cli import build_parser

    parser = build_parser()
    sets = [f"{k}={v}" for k, v in overrides.items() if k != "store.root"]
    args = parser.parse_args(["evaluate", "--store", store.cfg.root, "--release", release]
                             + [x for s in sets for x in ("--set", s)])
    assert args.func(args) == 0


def test_evaluate_without_mbpp_scores_humaneval_and_says_mbpp_was_skipped(scoring_store, no_mbpp):
    from primer.settings.evaluate import EvaluateConfig
    from tasks.evaluate import evaluate_model, read_summary

    store, _, release = scoring_store
    manifest = evaluate_model(store, EvaluateConfig(limit=2, max_new_tokens=8, mbpp_path=""), release=release["uri"])
    assert list(manifest["headline"]) == ["humaneval/humaneval"]
    assert any("mbpp skipped" in n for n in read_summary(store, manifest["uri"])["notes"])


def test_evaluate_flow_gives_the_same_records_whatever_runs_the_batches(prefect_harness, scoring_store, no_mbpp):
    """The sandbox batches are mapped on the flow's task runner: one thread or several, batches of one or of
    many, the records and pass@k are the same (durations, measurements, are in the manifest's run section)."""
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.evaluate import evaluate

    store, _, release = scoring_store
    base = {"store.root": store.cfg.root, "evaluate.benchmarks": ["humaneval"], "evaluate.limit": 3,
            "evaluate.max_new_tokens": 8, "evaluate.workers": 2, "evaluate.device": "cpu"}
    seen = []
    for workers, batch in ((1, 1), (4, 1), (4, 64)):
        uri = evaluate.with_options(task_runner=ThreadPoolTaskRunner(max_workers=workers))(
            profile="tiny", overrides={**base, "evaluate.exec_batch": batch}, release=release["uri"])
        rows = pq.read_table(Path(uri, "results.parquet")).to_pylist()
        summary = json.loads(Path(uri, "summary.json").read_text())
        seen.append((rows, summary["runs"]))
        store.fs.rm(store.to_path(uri), recursive=True)  # so the next runner scores again instead of reusing
    assert seen[0] == seen[1] == seen[2] and len(seen[0][0]) == 3
