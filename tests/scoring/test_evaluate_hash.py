"""Evaluate's outputs are content-addressed: two runs on the same weights and problems, each in a fresh store,
give the same content hash. Durations and other run facts live in the manifest's `run` section, and where the
model was read from in the manifest's `model` / `release`, never in the hashed files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq


def test_two_runs_in_fresh_stores_give_the_same_content_hash(scoring_store, tmp_path, no_mbpp):
    from primer.config import StoreConfig
    from primer.settings.evaluate import EvaluateConfig
    from primer.store import open_store
    from tasks.evaluate import evaluate_model

    store, _, release = scoring_store
    ev = EvaluateConfig(benchmarks=["humaneval"], limit=3, max_new_tokens=8, workers=1, device="cpu",
                        time_limit="reference")  # the per-task limits are measured: run facts too
    manifests = []
    for name in ("a", "b"):
        root = tmp_path / name  # a fresh store at its own place, holding the same release
        shutil.copytree(store.cfg.root, root, ignore=shutil.ignore_patterns("evaluate"))
        fresh = open_store(StoreConfig(root=str(root)))
        m = evaluate_model(fresh, ev, release=fresh.resolve(release["ref"]))
        assert not m["reused"] and m["uri"].startswith(str(root))
        manifests.append((fresh, m))
    (sa, a), (sb, b) = manifests
    assert a["key"] == b["key"]
    assert [(f["name"], f["sha256"]) for f in a["files"]] == [(f["name"], f["sha256"]) for f in b["files"]]
    assert a["content_hash"] == b["content_hash"]
    # the measurements are kept, in the manifest's run section
    for m in (a, b):
        facts = m["run"]["runs"]["humaneval/humaneval"]
        assert facts["timing_s"]["execute"] > 0 and facts["sample_duration_s"]["max"] > 0
        assert len(facts["sample_duration_s"]["slowest"]) == 3 and len(m["run"]["task_time_limits_s"]) == 3
        assert m["model"]["release"] and m["release"]  # where the model was read from: manifest only
    rows = pq.read_table(sa.to_path(f"{a['uri']}/results.parquet")).to_pylist()
    assert len(rows) == 3 and "duration_s" not in rows[0]
    summary = json.loads(Path(sa.to_path(a["uri"]), "summary.json").read_text())
    assert "release" not in summary and "release" not in summary["model"] and summary["model"]["weights_sha256"]
    assert all("timing_s" not in r for r in summary["runs"])
