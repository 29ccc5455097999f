"""The whole DAG in one run, with a loopback teacher; killed mid-run and re-run; the ablation."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from primer.config import load_config
from primer.store import open_store
from primer.lineage import load_lineage, verify_lineage
from tests.conftest import CORPUS_PACKAGES, MBPP_PATH, REPO

MODEL = {"n_layer": 2, "d_model": 64, "n_head": 4, "d_mlp": 128, "rotary_dim": 8}


def fast(root: str, corpus_dir: Path, **extra):
    """Overrides that keep every stage to seconds on 2 cores (the tiny profile, smaller)."""
    return {
        "store.root": root,
        "curate.sources": [{"uri": str(corpus_dir)}], "curate.max_docs": 0, "curate.annotate_n": 60,
        "curate.min_per_class": 3, "curate.rf_trees": 20, "curate.label_threshold": 7.5, "curate.mbpp_path": MBPP_PATH,
        "tokenizer.vocab_size": 512, "pack.seq_len": 64, "pack.val_fraction": 0.1,
        "model.overrides": MODEL, "train.local_dir": f"{root}-local", "train.threads_per_rank": 1,
        "train.pretrain.max_steps": 6, "train.pretrain.save_every": 3, "train.pretrain.eval_every": 3,
        "train.pretrain.batch_size": 8, "train.pretrain.micro_batch": 4, "train.pretrain.eval_batches": 1,
        "train.finetune.max_steps": 2, "train.finetune.save_every": 1, "train.finetune.eval_every": 1,
        "train.finetune.batch_size": 8, "train.finetune.micro_batch": 4, "train.finetune.eval_batches": 1,
        "select.limit": 3, "select.max_new_tokens": 16,
        "evaluate.limit": 3, "evaluate.max_new_tokens": 16, "evaluate.mbpp_path": MBPP_PATH,
        "synth.textbooks": 6, "synth.exercises": 6, "synth.verify_timeout_s": 2.0, "synth.min_chars": 300,
        "synth.dedup_threshold": 1.0,
        **extra,
    }


def teacher(server):
    from tests.support.fixtures import TEST_KEY_ENV

    return {"teacher.base_url": server.url, "teacher.model": "loopback-model", "teacher.api_key_env": TEST_KEY_ENV,
            "teacher.backoff_base_s": 0.01, "teacher.backoff_max_s": 0.1, "teacher.timeout_s": 10}


def test_pipeline_with_a_loopback_teacher_records_every_link(prefect_harness, scripted_server, corpus_dir, tmp_path):
    from flows.pipeline import pipeline

    root = str(tmp_path / "store")
    run_id = pipeline(profile="tiny", overrides=fast(root, corpus_dir, **teacher(scripted_server)))
    store = open_store(load_config("tiny", {"store.root": root}).store)
    doc = load_lineage(store, run_id)
    assert doc["status"] == "complete"
    assert set(doc["stages"]) == {"curate", "synthesize", "pack", "pack_exercises", "pretrain", "finetune",
                                  "select", "release", "evaluate"}
    assert verify_lineage(store, doc) == []
    # the chain: raw sources -> curated -> shards -> pretrain -> finetune -> selection -> release -> scores
    st = doc["stages"]
    assert st["pack"]["inputs"] == [st["curate"]["uri"], st["synthesize"]["uri"]]
    assert st["finetune"]["inputs"] == [st["pack_exercises"]["uri"], st["pretrain"]["uri"]]
    assert st["release"]["inputs"] == [st["select"]["uri"]]
    assert st["evaluate"]["inputs"] == [st["release"]["uri"]]
    assert store.read_output(st["evaluate"]["uri"]).content_hash == st["evaluate"]["content_hash"]
    assert not any(v["uri"].startswith("/") for v in st.values())  # lineage is store-relative


@pytest.fixture(scope="module")
def no_teacher_run(prefect_harness, corpus_dir, tmp_path_factory):
    """One pipeline run without a teacher, shared by the tests that read or copy its store."""
    from flows.pipeline import pipeline

    saved = {k: os.environ.pop(k) for k in ("OPENAI_API_KEY", "OPENAI_BASE_URL") if k in os.environ}
    root = str(tmp_path_factory.mktemp("no-teacher") / "store")
    try:
        run_id = pipeline(profile="tiny", overrides=fast(root, corpus_dir))
    finally:
        os.environ.update(saved)
    return root, run_id


def test_pipeline_without_teacher_skips_synthesis_and_cli_prints_lineage(no_teacher_run, capsys):
    from primer.cli import main as cli_main

    root, run_id = no_teacher_run
    store = open_store(load_config("tiny", {"store.root": root}).store)
    doc = load_lineage(store, run_id)
    assert doc["stages"]["synthesize"]["skipped"] and "no teacher" in doc["stages"]["synthesize"]["reason"]
    assert store.read_output(doc["stages"]["synthesize"]["uri"]).skipped  # a small manifest, not a string
    assert "finetune" not in doc["stages"] and doc["status"] == "complete"
    assert cli_main(["lineage", "--store", root, run_id]) == 0
    out = capsys.readouterr().out
    assert f"run {run_id}" in out and "synthesize     skipped" in out and "evaluate" in out
    assert root not in out  # store-relative paths


def manifests(root: str) -> dict[str, float]:
    """Every stage output's manifest under a local store root -> its creation stamp."""
    return {str(p.relative_to(root)): json.loads(p.read_text())["created_unix"]
            for p in Path(root).glob("**/manifest.json") if p.parts[-3] != "runs"}


def test_a_copied_store_reuses_every_stage_locally_and_on_s3(no_teacher_run, corpus_dir, tmp_path, s3_env):
    """Keys hash content, not locations: the same pipeline on a copy of the store (another folder, then S3)
    writes no new stage output and records the same refs and content hashes."""
    import shutil

    import fsspec

    from flows.pipeline import pipeline

    root, run_id = no_teacher_run
    before = manifests(root)
    original = load_lineage(open_store(load_config("tiny", {"store.root": root}).store), run_id)["stages"]

    def same_stages(store, new_run):
        stages = load_lineage(store, new_run)["stages"]
        assert {k: (v["uri"], v["content_hash"]) for k, v in stages.items()} == \
            {k: (v["uri"], v["content_hash"]) for k, v in original.items()}
        assert verify_lineage(store, load_lineage(store, new_run)) == []

    copy = str(tmp_path / "moved" / "store")
    shutil.copytree(root, copy)
    new_run = pipeline(profile="tiny", overrides=fast(copy, corpus_dir))
    same_stages(open_store(load_config("tiny", {"store.root": copy}).store), new_run)
    assert manifests(copy) == before  # nothing rewritten, nothing new: every stage was reused

    s3_root = f"s3://{s3_env['bucket']}/copied"
    s3 = fsspec.filesystem("s3", client_kwargs={"endpoint_url": s3_env["endpoint"]})
    s3.put(root.rstrip("/") + "/", s3_root.removeprefix("s3://"), recursive=True)
    listed_before = set(s3.find(s3_root))
    overrides = {**fast(s3_root, corpus_dir), "store.endpoint_url": s3_env["endpoint"]}
    new_run = pipeline(profile="tiny", overrides=overrides)
    same_stages(open_store(load_config("tiny", overrides).store), new_run)
    new_files = {f for f in set(s3.find(s3_root)) - listed_before if "/runs/" not in f}
    assert not new_files, sorted(new_files)[:5]


def test_killed_pipeline_reruns_without_redoing_finished_stages(prefect_harness, corpus_dir, tmp_path):
    from prefect.settings import PREFECT_API_URL

    from flows.pipeline import pipeline

    root = str(tmp_path / "store")
    overrides = fast(root, corpus_dir)
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(REPO)}
    env.pop("OPENAI_API_KEY", None)
    args = [sys.executable, "-m", "primer.cli", "run", "--profile", "tiny"]
    for key, value in overrides.items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    shm_before = set(glob.glob("/dev/shm/deepspeed_allreduce_buffer*"))
    proc = subprocess.Popen(args, env=env, cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # kill it in the middle of training, after the first checkpoint landed in the store
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and not list(Path(root).glob("train/*/step-*/manifest.json")):
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    stamps = {p: json.loads(p.read_text())["created_unix"] for p in Path(root).glob("*/*/manifest.json")
              if p.parts[-3] in ("curate", "pack", "tokenizer")}
    first_ckpt = sorted(Path(root).glob("train/*/step-*/manifest.json"))[0]
    ckpt_stamp = json.loads(first_ckpt.read_text())["created_unix"]
    assert stamps, "no finished stage before the kill"

    run_id = pipeline(profile="tiny", overrides=overrides)
    store = open_store(load_config("tiny", {"store.root": root}).store)
    assert load_lineage(store, run_id)["status"] == "complete"
    # the killed run's DeepSpeed buffers in /dev/shm were cleaned by the next launch
    assert not [b for b in glob.glob("/dev/shm/deepspeed_allreduce_buffer*") if b not in shm_before]
    for path, stamp in stamps.items():  # finished outputs were reused, not rewritten
        assert json.loads(path.read_text())["created_unix"] == stamp, path
    assert json.loads(first_ckpt.read_text())["created_unix"] == ckpt_stamp  # training resumed, not restarted


def test_ablation_publishes_a_comparison(prefect_harness, scripted_server, corpus_dir, tmp_path):
    from flows.ablation import ablation

    root = str(tmp_path / "store")
    ov = fast(root, corpus_dir, **teacher(scripted_server))
    ov["curate.sources"] = [{"uri": str(corpus_dir / pkg)} for pkg in CORPUS_PACKAGES[:3]]
    state = ablation(profile="tiny", overrides=ov, humaneval_limit=20, return_state=True)
    uri = state.result()
    store = open_store(load_config("tiny", {"store.root": root}).store)
    manifest = store.read_json(f"{uri}/manifest.json")
    arms = {a["arm"]: a for a in manifest["arms"]}
    assert set(arms) == {"unfiltered", "curated", "curated+synthetic"}
    budgets = {a["train_tokens"] for a in arms.values()}
    assert len(budgets) == 1  # equal token budgets
    assert all(a["humaneval_loss"] > 0 for a in arms.values())
    assert store.exists(f"{uri}/comparison.png")

    from tests.conftest import flow_artifacts

    found = flow_artifacts(state.state_details.flow_run_id, ["ablation-comparison", "ablation-summary"])
    assert set(found) == {"ablation-comparison", "ablation-summary"}
    table = found["ablation-comparison"].data
    assert {r["arm"] for r in (json.loads(table) if isinstance(table, str) else table)} == set(arms)
