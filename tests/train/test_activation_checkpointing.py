"""`train.activation_checkpointing`: the same losses, less peak memory, through the real training program.

Two runs of the program (1 rank, CPU) from the same seed and data, the knob off and on. Each rank is its own
process, so its peak memory is the process's max RSS (`ru_maxrss`, reported in the `done` event); the model
is shaped so that activations dominate it (8 blocks over 8 x 512 tokens, ~1.7M parameters): without
checkpointing every block's activations (~35 MB each) are alive at the end of the forward, with it only the
blocks' inputs and one block's recomputed activations.
"""

from __future__ import annotations

import os

import pytest

from primer.config import SourceSpec, load_config
from primer.store import open_store
from tasks.train import build_spec, launch

os.environ["PRIMER_STRICT_COLLECTIVES"] = "1"

DEEP = {"n_layer": 8, "d_model": 128, "n_head": 4, "d_mlp": 512, "rotary_dim": 16}


@pytest.fixture(scope="module")
def long_rows(pack_into_store, corpus_dir):
    root, uri, m = pack_into_store("ckptstore", SourceSpec(uri=str(corpus_dir / "email")), seq_len=513,
                                   val_fraction=0.1)
    assert m["splits"]["train"]["rows"] >= 32
    return root, uri


def _train(root, shards, local_dir, checkpointing: bool):
    cfg = load_config("tiny", {
        "store.root": root, "train.shards": shards, "train.local_dir": local_dir, "model.overrides": DEEP,
        "train.activation_checkpointing": checkpointing, "train.nproc": 1, "train.threads_per_rank": 1,
        "train.consolidate": False, "train.pretrain.max_steps": 3, "train.pretrain.save_every": 3,
        "train.pretrain.eval_every": 3, "train.pretrain.eval_batches": 1, "train.pretrain.batch_size": 8,
        "train.pretrain.micro_batch": 8, "train.pretrain.warmup_steps": 1, "train.pretrain.lr": 3e-3})
    spec = build_spec(cfg, open_store(cfg.store), "pretrain", cfg.train.shards)
    assert spec.activation_checkpointing is checkpointing
    events = launch(spec, 1, cfg.train.launcher)
    losses = [e["loss"] for e in events if e["event"] == "step"]
    done = [e for e in events if e["event"] == "done"][0]
    return spec, losses, done["peak_memory_bytes"]


def test_activation_checkpointing_same_losses_lower_peak_memory(long_rows, tmp_path):
    root, uri = long_rows
    spec_off, off, peak_off = _train(root, uri, str(tmp_path / "off"), False)
    spec_on, on, peak_on = _train(root, uri, str(tmp_path / "on"), True)
    assert spec_on.run_key != spec_off.run_key  # two runs, not one reused
    assert len(off) == len(on) == 3 and off[-1] < off[0]
    # Recomputing a block in backward replays the same ops on the same inputs (and the same RNG state):
    # the losses agree to fp32 rounding (bit-identical on this CPU build).
    assert on == pytest.approx(off, rel=1e-6, abs=1e-7), (on, off)
    # Without checkpointing ~8 x 35 MB of activations are alive at once; with it ~1 block's worth.
    saved = peak_off - peak_on
    print(f"peak RSS off {peak_off / 2**20:.0f} MiB, on {peak_on / 2**20:.0f} MiB; losses {off} vs {on}")
    assert saved > 150 * 2**20, (f"peak RSS off {peak_off / 2**20:.0f} MiB, on {peak_on / 2**20:.0f} MiB: "
                                 f"checkpointing saved only {saved / 2**20:.0f} MiB")
