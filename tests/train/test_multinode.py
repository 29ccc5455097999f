"""Two "nodes" x 1 rank on 127.0.0.1, torchrun-style (--nnodes 2 --node_rank k --master_addr): each node has its
own scratch directory and TMPDIR, only the store is shared. ZeRO-2 and ZeRO-3: train; SIGKILL both nodes after
the first checkpoint; resume; the losses must be bit-identical to an uninterrupted run and the consolidated
weights (built by rank 0 from the store, which holds both nodes' partitions) equal."""

from __future__ import annotations

import os
import signal
import socket
import threading

import pytest

from primer.config import load_config
from primer.store import open_store
from tasks.train import TrainingFailed, build_spec, launch, run_summary
from tasks.train.launch import kill_tree
from tests.train.test_training import MODEL, shards  # noqa: F401  (module fixture: packed shards)

os.environ["PRIMER_STRICT_COLLECTIVES"] = "1"
# Enough steps (a checkpoint every 2) that the SIGKILL, sent when the launcher reads step 3's event, lands
# long before the end: a tiny model's steps outrun the pipe otherwise.
MAX_STEPS = 24


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_config(root, shards_uri, scratch, node, port, zero):
    return load_config("tiny", {
        "store.root": root, "train.shards": shards_uri, "train.local_dir": str(scratch / "train"),
        "model.overrides": MODEL, "train.zero_stage": zero, "train.launcher": "torchrun",
        "train.nproc": 1, "train.nnodes": 2, "train.node_rank": node, "train.master_port": port,
        "train.threads_per_rank": 1, "train.pretrain.max_steps": MAX_STEPS, "train.pretrain.save_every": 2,
        "train.pretrain.eval_every": 2, "train.pretrain.batch_size": 8, "train.pretrain.micro_batch": 4,
        "train.pretrain.warmup_steps": 1, "train.pretrain.lr": 3e-3, "train.pretrain.eval_batches": 1})


def run_two_nodes(root, shards_uri, tmp_path, zero, kill_after_step=None):
    """Both nodes' launchers, each in a thread; returns (spec, node-0 events, {node: error or None})."""
    port, procs, events, errors, specs = _port(), {}, [], {}, {}

    def on_event(event):
        events.append(event)
        if kill_after_step and event["event"] == "step" and event["step"] == kill_after_step:
            for proc in procs.values():  # SIGKILL everything, both nodes' launchers and ranks, mid-run
                kill_tree(proc, signal.SIGKILL)

    def node(k):
        scratch = tmp_path / f"node{k}"
        (scratch / "tmp").mkdir(parents=True, exist_ok=True)
        cfg = _node_config(root, shards_uri, scratch, k, port, zero)
        spec = specs[k] = build_spec(cfg, open_store(cfg.store), "pretrain", shards_uri)
        try:
            launch(spec, 1, "torchrun", on_event=on_event if k == 0 else None, nnodes=2, node_rank=k,
                   master_addr="127.0.0.1", master_port=port, env={"TMPDIR": str(scratch / "tmp")},
                   on_start=lambda p: procs.__setitem__(k, p))
            errors[k] = None
        except TrainingFailed as e:
            errors[k] = e

    threads = [threading.Thread(target=node, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=900)
    assert specs[0].run_key == specs[1].run_key and specs[0].world == 2
    return specs[0], events, errors


def losses(events):
    return {e["step"]: e["loss"] for e in events if e["event"] == "step"}


@pytest.mark.parametrize("zero", [2, 3])
def test_two_nodes_kill_resume_bit_identical(zero, shards, tmp_path):  # noqa: F811
    _, uri = shards
    ref_root, run_root = str(tmp_path / "store-a"), str(tmp_path / "store-b")
    spec, reference, errors = run_two_nodes(ref_root, uri, tmp_path / "a", zero)
    assert errors == {0: None, 1: None}, errors
    ref_store = open_store(load_config("tiny", {"store.root": ref_root}).store)
    ref_manifest = run_summary(ref_store, spec, reference)
    last = ref_store.read_output(ref_manifest["checkpoints"][-1]["uri"]).manifest
    names = {f["name"] for f in last["files"]}
    # node 1's partition and RNG state are in the checkpoint (they were never on node 0's disk)
    assert "ds/rng-rank1.pt" in names and any("zero_pp_rank_1" in n for n in names), sorted(names)
    assert last["world"] == 2

    # killed when step 3's event is read: the step-2 checkpoint is in the store (later ones may be, if the
    # ranks outran the kill); either way the run is unfinished and resumes from its latest checkpoint
    _, killed, errors = run_two_nodes(run_root, uri, tmp_path / "b", zero, kill_after_step=3)
    assert errors[0] is not None and max(losses(killed)) < MAX_STEPS, "the run was not killed before its end"
    assert 'last event: {"event": ' in str(errors[0]), errors[0]  # the failure names where the run stopped
    _, resumed, errors = run_two_nodes(run_root, uri, tmp_path / "c", zero)  # fresh scratch: store only
    assert errors == {0: None, 1: None}, errors
    (start,) = [e["step"] for e in resumed if e["event"] == "resume"]
    after, before = losses(resumed), losses(reference)
    assert 2 <= start < MAX_STEPS and start % 2 == 0 and sorted(after) == list(range(start + 1, MAX_STEPS + 1))
    assert all(after[s] == before[s] for s in after), (after, before)  # bit-identical

    store = open_store(load_config("tiny", {"store.root": run_root}).store)
    manifest = run_summary(store, spec, resumed)
    sha = {}
    for st, m in ((ref_store, ref_manifest), (store, manifest)):
        ckpt = st.read_output(m["checkpoints"][-1]["uri"]).manifest
        sha[st.root] = next(f["sha256"] for f in ckpt["files"] if f["name"] == "model.safetensors")
    assert len(set(sha.values())) == 1, sha
