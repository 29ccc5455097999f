"""The pipeline run page (primer/run_page.py) built from real stage outputs in a store: every section, store-
relative lineage, and no empty metric column without a line saying why."""

from __future__ import annotations

import base64

from primer.lineage import RunLineage, stage_entry
from primer.run_page import build_run_page, drop_empty_columns, table

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")


def _output(store, stage, key, manifest, files=None):
    out = store.output(stage, key)
    for name, data in (files or {}).items():
        with out.open_local(name) as path:
            path.write_bytes(data)
    return out.commit(manifest)["uri"]


def _no_teacher_run(store):
    curate = _output(store, "curate", "c1", {"funnel": [{"step": "read", "docs": 60, "bytes": 1000},
                                                        {"step": "kept", "docs": 40, "bytes": 700}],
                                             "drops": {"syntax": 12, "dedup": 8}}, {"data/part-0.parquet": b"x"})
    synth = store.output("synthesize", "s1").commit_skipped("no teacher configured: set teacher.base_url")["uri"]
    pack = _output(store, "pack", "p1", {"tokenizer": {"uri": "pack/p1/tokenizer.json"}}, {"train-0.bin": b"t"})
    train_uri = _output(store, "train", "t1", {"phase": "pretrain", "checkpoints": [
        {"step": 3, "train_loss": 6.1, "val_loss": 6.3, "tokens": 1536, "uri": store.uri("train", "t1", "step-000003")},
        {"step": 6, "train_loss": 5.2, "val_loss": 5.9, "tokens": 3072, "uri": store.uri("train", "t1", "step-000006")}]},
        {"events.jsonl": b"{}\n"})
    store.write_bytes(store.uri("train", "t1", "loss.png"), PNG)
    select = _output(store, "select", "sel1", {"chosen": {"step": 6}, "reason": "lowest validation loss (no MBPP)",
                                               "candidates": [{"step": 3, "pass@1": None, "n_passed": 0, "n_tasks": 0,
                                                               "val_loss": 6.3},
                                                              {"step": 6, "pass@1": None, "n_passed": 0, "n_tasks": 0,
                                                               "val_loss": 5.9}]}, {"choice.json": b"{}"})
    evaluate = _output(store, "evaluate", "e1", {"summary": {"limit": 3, "runs": [
        {"benchmark": "humaneval", "split": "test", "prompt_format": "docstring", "n_tasks": 3, "pass@1": 0.0}]}},
        {"summary.json": b"{}"})
    lineage = RunLineage(store, "run-1", "tiny", {})
    lineage.doc["external_inputs"] = [{"name": "code", "uri": "/somewhere/outside/the/store/corpus",
                                       "fingerprint": "ab" * 32}]
    lineage.record("curate", stage_entry(store, curate, []))
    lineage.record("synthesize", stage_entry(store, synth))
    lineage.note("no teacher: pretraining on curated code only, no finetuning phase")
    lineage.record("pack", stage_entry(store, pack, [curate]))
    lineage.record("pretrain", stage_entry(store, train_uri, [pack]))
    lineage.record("select", stage_entry(store, select, [train_uri]))
    lineage.record("evaluate", stage_entry(store, evaluate, [select]))
    lineage.finish()
    return lineage.doc


def test_empty_columns_are_left_out_with_the_reason():
    rows = [{"step": 1, "score": None, "loss": 2.0}, {"step": 2, "score": "", "loss": 1.5}]
    kept, empty = drop_empty_columns(rows)
    assert empty == ["score"] and all("score" not in r for r in kept)
    text = table(rows, {"score": "MBPP not available"})
    assert "| score" not in text and "Column `score` left out: MBPP not available" in text


def test_run_page_tells_the_story_with_store_relative_paths(local_store):
    doc = _no_teacher_run(local_store)
    page = build_run_page(local_store, doc, {"curate": "http://ui/runs/flow-run/abc"})
    for needle in ("# Pipeline run `run-1`", "## Stages", "[curate](http://ui/runs/flow-run/abc)",
                   "## Curation funnel", "| kept | 40 | 700 |", "syntax 12", "**No teacher**",
                   "no teacher configured", "## Training", "![pretrain loss curve](data:image/png;base64,",
                   "`train/t1/step-000006`", "## Checkpoint selection", "lowest validation loss",
                   "Column `mbpp_val_pass@1` left out: no MBPP validation tasks were scored", "## Scores",
                   "First 3 problems", "| humaneval | test | docstring | 3 | 0.0 |", "## Lineage (store-relative)",
                   "`pack/p1`", "`curate/c1`", "fingerprint"):
        assert needle in page, f"{needle!r} not in the page:\n{page}"
    # nothing inside the store is shown by its absolute location; the raw source outside it is
    assert local_store.root not in page
    assert "/somewhere/outside/the/store/corpus" in page
    # the select table has no empty MBPP column: it is left out, with the reason above
    select_header = next(ln for ln in page.splitlines() if ln.startswith("| step | val_loss"))
    assert "mbpp" not in select_header and "passed" not in select_header


def test_run_page_outside_a_run_publishes_nothing_and_returns_the_page(local_store):
    from primer.run_page import publish_run_page

    doc = _no_teacher_run(local_store)
    assert "## Stages" in publish_run_page(local_store, doc)
