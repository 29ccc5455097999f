"""Parameter counts against HF's published shapes, and exact-function conversion to/from HF Phi."""

import pytest
import torch
from transformers import PhiConfig, PhiForCausalLM

from model import PhiLM, num_params, preset
from model.hf import from_hf, from_hf_config, from_hf_state_dict, to_hf, to_hf_config, to_hf_state_dict

from .helpers import EOS, doc, make_model

ATOL = 1e-5  # fp32; observed max |diff| ~5e-7 (summation order + gelu formula)


@pytest.mark.parametrize(
    "hf_kwargs,name,expected",
    [
        (dict(vocab_size=51200, hidden_size=2048, intermediate_size=8192, num_hidden_layers=24,
              num_attention_heads=32, partial_rotary_factor=0.5, max_position_embeddings=2048,
              tie_word_embeddings=False), "phi1", 1_418_270_720),
        (dict(vocab_size=51200, hidden_size=1024, intermediate_size=4096, num_hidden_layers=20,
              num_attention_heads=16, partial_rotary_factor=0.5, max_position_embeddings=2048,
              tie_word_embeddings=False), "phi1_small", 356_794_368),
    ],
)
def test_param_counts_match_hf(hf_kwargs, name, expected):
    with torch.device("meta"):  # shapes only, no memory
        hf = PhiForCausalLM(PhiConfig(**hf_kwargs))
        ours = PhiLM(preset(name))
        hf_from_ours = PhiForCausalLM(PhiConfig(**to_hf_config(preset(name))))
    n_hf = sum(p.numel() for p in hf.parameters())
    assert n_hf == expected
    assert num_params(preset(name)) == ours.num_params() == expected
    assert sum(p.numel() for p in hf_from_ours.parameters()) == expected


def test_hf_logits_equal_primer_logits():
    model = make_model(seed=0, n_layer=3)
    hf = to_hf(model)
    x = torch.stack([doc(64, 1), doc(64, 2)])  # no EOS inside: HF does no document masking
    assert not (x == EOS).any()
    with torch.no_grad():
        ours, _ = model(x)
        theirs = hf(x).logits
    assert theirs.shape == ours.shape
    torch.testing.assert_close(theirs, ours, atol=ATOL, rtol=0)
    assert ours.std() > 0.1  # a non-degenerate comparison


def test_hf_loss_equals_primer_loss():
    model = make_model(seed=4)
    hf = to_hf(model)
    x = doc(48, 3)[None]
    y = torch.cat([x[:, 1:], torch.full((1, 1), -100)], dim=1)  # HF shifts labels itself
    with torch.no_grad():
        _, ours = model(x, y)
        theirs = hf(x, labels=x).loss
    torch.testing.assert_close(theirs, ours, atol=ATOL, rtol=0)


@pytest.mark.parametrize("tie", [False, True])
def test_round_trip_through_hf(tie):
    model = make_model(seed=5, tie_embeddings=tie)
    sd = to_hf_state_dict(model)
    assert "model.layers.0.self_attn.q_proj.weight" in sd and "model.layers.1.mlp.fc2.bias" in sd
    assert sd["model.layers.0.self_attn.k_proj.weight"].shape == (64, 64)
    back = from_hf_state_dict(sd, model.cfg)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(back[k], v, atol=0, rtol=0)
    assert from_hf_config(PhiConfig(**to_hf_config(model.cfg))) == model.cfg
    hf = to_hf(model)
    again = from_hf(hf)
    x = doc(30, 6)[None]
    with torch.no_grad():
        torch.testing.assert_close(again(x)[0], model(x)[0], atol=0, rtol=0)
