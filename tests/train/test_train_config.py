"""Training settings fail at config load, naming the setting; partial phase overrides keep the phase's defaults."""

from __future__ import annotations

import pytest

from primer.config import load_config
from primer.errors import ConfigError
from primer.training.program import lr_lambda
from primer.training.spec import TrainSpec


def test_partial_finetune_override_keeps_the_finetune_defaults():
    ft = load_config("tiny", {"train.finetune.max_steps": 10}).train.finetune
    assert (ft.max_steps, ft.lr, ft.warmup_steps, ft.weight_decay) == (10, 1e-4, 5, 0.01)


def test_a_model_override_typo_fails_at_load_naming_the_field():
    with pytest.raises(ConfigError, match=r"model.overrides.n_layr: no such model field \(did you mean 'n_layer'"):
        load_config("tiny", {"model.overrides": {"n_layr": 2}})


def test_finetune_without_consolidated_weights_fails_at_load():
    with pytest.raises(ConfigError, match=r"train.consolidate: false, but train.finetune_shards is set"):
        load_config("tiny", {"train.consolidate": False, "train.finetune_shards": "pack/x"})


def test_world_is_nnodes_times_nproc_in_the_batch_check():
    with pytest.raises(ConfigError, match=r"micro_batch x world = 4 x 4 \(nnodes x nproc\)"):
        load_config("tiny", {"train.nnodes": 2, "train.nproc": 2, "train.pretrain.batch_size": 8,
                             "train.pretrain.micro_batch": 4})


def test_cosine_decay_goes_from_peak_to_zero():
    phase = load_config("tiny", {"train.pretrain.decay": "cosine", "train.pretrain.warmup_steps": 2,
                                 "train.pretrain.max_steps": 12}).train.pretrain
    f = lr_lambda(phase)
    assert f(0) == 0.5 and f(2) == pytest.approx(1.0) and f(7) == pytest.approx(0.5) and f(12) == pytest.approx(0.0)


def test_train_spec_round_trips_inline_and_its_key_ignores_locations():
    cfg = load_config("tiny")
    spec = TrainSpec(phase="pretrain", phase_config=cfg.train.pretrain, model={"n_layer": 2}, shards="pack/a",
                     shards_hash="h", store={"root": "/x"}, local_dir="/scratch/a")
    back = TrainSpec.decode(spec.encode())
    assert back == spec
    moved = TrainSpec.decode(spec.encode())
    moved.shards, moved.store, moved.local_dir = "s3://bucket/pack/a", {"root": "s3://bucket"}, "/other"
    assert moved.identity() == spec.identity()
