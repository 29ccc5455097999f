"""Real 2-process DeepSpeed training (gloo on CPU) of a tiny model on packed shards from the store."""

from __future__ import annotations

import dataclasses
import glob
import json
import os

import numpy as np
import pytest
import torch

from primer.config import SourceSpec, load_config
from primer.settings.train import PhaseConfig
from primer.training.spec import TrainSpec
from primer.store import open_store
from primer.training.data import ShardRows, eval_batches
from tasks.train import build_spec, launch, run_summary

# Every training program these tests start runs under the collectives checker (primer/training/collectives.py):
# a metric reduced with torch.distributed directly, or on the wrong device, fails the run on CPU.
os.environ["PRIMER_STRICT_COLLECTIVES"] = "1"

MODEL = {"n_layer": 2, "d_model": 64, "n_head": 4, "d_mlp": 128, "rotary_dim": 8}


class Killed(Exception):
    pass


def overrides(root, shards, local_dir, **extra):
    return {"store.root": root, "train.shards": shards, "train.local_dir": local_dir, "model.overrides": MODEL,
            "train.pretrain.max_steps": 12, "train.pretrain.save_every": 4, "train.pretrain.eval_every": 4,
            "train.pretrain.batch_size": 8, "train.pretrain.micro_batch": 4, "train.pretrain.warmup_steps": 2,
            "train.pretrain.lr": 3e-3, "train.pretrain.eval_batches": 2, "train.threads_per_rank": 1, **extra}


@pytest.fixture(scope="module")
def shards(pack_into_store, corpus_dir):
    root, uri, _ = pack_into_store("trainstore", SourceSpec(uri=str(corpus_dir / "email")), seq_len=64,
                                   val_fraction=0.2)
    return root, uri


def _run(cfg_overrides, on_event=None):
    cfg = load_config("tiny", cfg_overrides)
    store = open_store(cfg.store)
    spec = build_spec(cfg, store, "pretrain", cfg.train.shards)
    events = launch(spec, 2, cfg.train.launcher, on_event=on_event)
    return cfg, store, spec, events


def losses(events):
    return {e["step"]: e["loss"] for e in events if e["event"] == "step"}


@pytest.fixture(scope="module")
def zero2_run(shards, tmp_path_factory):
    root, uri = shards
    before = set(glob.glob("/dev/shm/deepspeed_allreduce_buffer*"))
    cfg, store, spec, events = _run(overrides(root, uri, str(tmp_path_factory.mktemp("local"))))
    after = set(glob.glob("/dev/shm/deepspeed_allreduce_buffer*"))
    return {"cfg": cfg, "store": store, "spec": spec, "events": events, "manifest": run_summary(store, spec, events),
            "shm_left": after - before}


def _val_loss_from_weights(store, manifest, spec):
    """Validation loss of the consolidated fp32 weights, on the same rows the engine evaluated."""
    from safetensors.torch import load

    from model import ModelConfig, PhiLM

    model = PhiLM(ModelConfig.from_dict(spec.model))
    model.load_state_dict(load(store.read_bytes(store.resolve(manifest["weights"]))))
    model.eval()
    rows = ShardRows(store, store.resolve(spec.shards), "val")
    total = n = 0.0
    with torch.no_grad():
        for rank in range(2):
            for batch in eval_batches(rows, spec.phase_config.eval_batches, spec.phase_config.micro_batch, rank, 2):
                x = torch.from_numpy(batch)
                _, loss = model(x[:, :-1], x[:, 1:])
                total += loss.item() * x[:, 1:].numel()
                n += x[:, 1:].numel()
    return total / n


def test_zero2_loss_goes_down_and_checkpoints_land_in_the_store(zero2_run):
    ls = losses(zero2_run["events"])
    assert sorted(ls) == list(range(1, 13))
    assert np.mean([ls[10], ls[11], ls[12]]) < ls[1] - 0.3, ls
    steps = [c["step"] for c in zero2_run["manifest"]["checkpoints"]]
    assert steps == [4, 8, 12]
    assert all(c["val_loss"] is not None for c in zero2_run["manifest"]["checkpoints"])
    assert zero2_run["manifest"]["checkpoints"][-1]["val_loss"] < zero2_run["manifest"]["checkpoints"][0]["val_loss"]
    assert not zero2_run["shm_left"], "DeepSpeed shared-memory buffers were left in /dev/shm"


def test_consolidated_fp32_weights_reproduce_the_engine_validation_loss(zero2_run):
    store, spec = zero2_run["store"], zero2_run["spec"]
    for ckpt in zero2_run["manifest"]["checkpoints"]:
        assert _val_loss_from_weights(store, ckpt, spec) == pytest.approx(ckpt["val_loss"], abs=1e-5)


def test_kill_after_a_checkpoint_then_resume_matches_uninterrupted(zero2_run, shards, tmp_path):
    root, uri = shards
    ov = overrides(str(tmp_path / "store"), uri, str(tmp_path / "local"))
    # the shards live in another store: point the run at them by URI (any store URI works)
    cfg_a = zero2_run["cfg"]

    def kill_at_first_checkpoint(event):
        if event["event"] == "checkpoint" and event["step"] == 4:
            raise Killed()

    with pytest.raises(Killed):
        _run(ov, kill_at_first_checkpoint)
    # The kill lands while the ranks run on: on a loaded machine they may commit step 8 before it does.
    # Whatever the newest committed checkpoint, the resume must start there (and not at the end).
    from primer.training.checkpoints import latest_checkpoint

    store = open_store(load_config("tiny", ov).store)
    committed = latest_checkpoint(store, zero2_run["spec"].run_key)["step"]
    assert committed in (4, 8), committed
    _, store, spec, events = _run(ov)
    assert spec.run_key == zero2_run["spec"].run_key and cfg_a.store.root != ov["store.root"]
    resumed = [e for e in events if e["event"] == "resume"]
    assert resumed and resumed[0]["step"] == committed
    after, reference = losses(events), losses(zero2_run["events"])
    assert sorted(after) == list(range(committed + 1, 13))
    for step in after:
        assert after[step] == pytest.approx(reference[step], rel=1e-6, abs=1e-7), (step, after[step], reference[step])


def test_zero3_trains_and_consolidates(shards, tmp_path):
    root, uri = shards
    ov = overrides(root, uri, str(tmp_path / "local"), **{"train.zero_stage": 3, "train.pretrain.max_steps": 8})
    cfg, store, spec, events = _run(ov)
    ls = losses(events)
    assert np.mean([ls[7], ls[8]]) < ls[1] - 0.2, ls
    manifest = run_summary(store, spec, events)
    last = manifest["checkpoints"][-1]
    assert last["step"] == 8
    assert _val_loss_from_weights(store, last, spec) == pytest.approx(last["val_loss"], abs=1e-5)


def test_bf16_trains_on_cpu_close_to_fp32(zero2_run, shards, tmp_path):
    """DeepSpeed casts the parameters to bf16 (the fused head + loss then returns bf16 gradients)."""
    root, uri = shards
    ov = overrides(root, uri, str(tmp_path / "local"), **{"train.dtype": "bf16", "train.pretrain.save_every": 12})
    _, _, spec, events = _run(ov)
    ls, fp32 = losses(events), losses(zero2_run["events"])
    assert spec.dtype == "bf16" and sorted(ls) == list(range(1, 13))
    assert np.mean([ls[10], ls[11], ls[12]]) < ls[1] - 0.3, ls
    assert ls != fp32  # really ran in another precision ...
    for s in ls:  # ... and followed the fp32 run (same data, schedule and init) closely
        assert ls[s] == pytest.approx(fp32[s], abs=0.05), (s, ls[s], fp32[s])


def test_finetune_starts_from_pretrained_weights_with_its_own_schedule(prefect_harness, zero2_run, shards, tmp_path):
    from flows.train import best_checkpoint, train

    root, uri = shards
    ov = {**overrides(root, uri, zero2_run["cfg"].train.local_dir), "train.finetune_shards": uri,
          "train.finetune.max_steps": 4, "train.finetune.warmup_steps": 2, "train.finetune.lr": 1e-4,
          "train.finetune.batch_size": 8, "train.finetune.micro_batch": 4, "train.finetune.save_every": 2,
          "train.finetune.eval_every": 2, "train.finetune.eval_batches": 2}
    state = train(profile="tiny", overrides=ov, return_state=True)
    run_uri = state.result()
    store = zero2_run["store"]
    ft = store.read_json(run_uri + "/manifest.json")
    assert ft["phase"] == "finetune" and [c["step"] for c in ft["checkpoints"]] == [2, 4]
    start = best_checkpoint(zero2_run["manifest"])
    assert ft["inputs"]["init_weights"] == start["weights"]
    events = [json.loads(line) for line in store.read_bytes(run_uri + "/events.jsonl").decode().splitlines()]
    # its own schedule and a fresh optimizer: steps count from 1, warmup from the finetune LR
    steps = [e for e in events if e["event"] == "step"]
    assert steps[0]["step"] == 1 and steps[0]["lr"] == pytest.approx(1e-4 / 2)
    # the starting weights are the pretraining checkpoint's: same loss on the same validation rows
    step0 = [e for e in events if e["event"] == "eval" and e["step"] == 0][0]
    spec = dataclasses.replace(zero2_run["spec"], phase_config=dataclasses.replace(
        zero2_run["spec"].phase_config, eval_batches=2, micro_batch=4))
    assert step0["val_loss"] == pytest.approx(_val_loss_from_weights(store, start, spec), abs=1e-5)

    from tests.conftest import flow_artifacts

    keys = ["train-finetune-checkpoints", "train-finetune-summary", "train-finetune-progress"]
    found = flow_artifacts(state.state_details.flow_run_id, keys)
    assert set(found) == set(keys)
    assert "data:image/png;base64," in found["train-finetune-summary"].data
    assert store.exists(store.uri("train", ft["run_key"], "loss.png"))
    assert "MFU" in found["train-finetune-summary"].data and "tok/s per device" in found["train-finetune-summary"].data


def test_fp16_on_a_cpu_node_fails_before_spawning_any_rank(monkeypatch):
    from primer.errors import ConfigError
    from tasks.train import check_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("subprocess.Popen", lambda *a, **k: pytest.fail("a rank was spawned"))
    with pytest.raises(ConfigError, match=r"train.dtype=fp16: no CUDA device .* train.dtype=bf16"):
        launch(TrainSpec(phase="pretrain", phase_config=PhaseConfig(), model={}, shards="", shards_hash="",
                         dtype="fp16"), 2, "deepspeed")
    check_precision("bf16")  # bf16 and fp32 train on CPU (DeepSpeed casts the parameters)
    check_precision("fp16", hostfile="/etc/primer/hosts")  # the ranks run on the hostfile's nodes
