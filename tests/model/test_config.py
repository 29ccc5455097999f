import dataclasses

import pytest
import torch

from model import ModelConfig, PhiLM, num_params, preset
from model.config import PRESETS


@pytest.mark.parametrize(
    "field,value",
    [
        ("vocab_size", 0),
        ("n_layer", -1),
        ("n_head", 0),
        ("d_model", 130),  # not divisible by n_head=4
        ("d_mlp", 0),
        ("rotary_dim", 64),  # > head_dim 32
        ("rotary_dim", 15),  # odd
        ("max_seq_len", 0),
        ("resid_dropout", 1.0),
        ("attn_dropout", -0.1),
        ("embd_dropout", 2.0),
        ("layer_norm_eps", 0.0),
        ("eos_token_id", 4096),  # == vocab_size of tiny
        ("rope_theta", 0.0),
    ],
)
def test_validate_names_the_bad_field(field, value):
    cfg = dataclasses.replace(preset("tiny"), **{field: value})
    with pytest.raises(ValueError, match=rf"ModelConfig\.{field}="):
        cfg.validate()


def test_preset_overrides_and_unknowns():
    cfg = preset("tiny", vocab_size=8192, eos_token_id=7)
    assert (cfg.vocab_size, cfg.eos_token_id, cfg.n_layer, cfg.d_model, cfg.head_dim, cfg.rotary_dim) == (
        8192, 7, 4, 128, 32, 16)
    with pytest.raises(ValueError, match="unknown model preset"):
        preset("huge")
    with pytest.raises(ValueError, match="n_layers"):
        preset("tiny", n_layers=3)
    with pytest.raises(ValueError, match=r"ModelConfig\.d_model=128: must be divisible by n_head=3"):
        preset("tiny", n_head=3)  # the message names both fields of the broken pair
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_presets_match_the_paper():
    s, p = preset("phi1_small"), preset("phi1")
    assert (s.n_layer, s.d_model, s.n_head, s.d_mlp, s.rotary_dim, s.max_seq_len) == (20, 1024, 16, 4096, 32, 2048)
    assert (p.n_layer, p.d_model, p.n_head, p.d_mlp, p.rotary_dim, p.max_seq_len) == (24, 2048, 32, 8192, 32, 2048)
    assert set(PRESETS) == {"tiny", "phi1_small", "phi1"}


@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("name", ["tiny", "phi1_small", "phi1"])
def test_num_params_is_exact(name, tie):
    cfg = preset(name, tie_embeddings=tie)
    with torch.device("meta"):
        m = PhiLM(cfg)
    assert num_params(cfg) == m.num_params() == sum(p.numel() for p in m.parameters())
