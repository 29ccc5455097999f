"""Conversion between Primer's PhiLM and Hugging Face transformers' Phi (`PhiForCausalLM`).

The only layout difference is the fused QKV projection: Primer's `attn.qkv` is HF's q_proj, k_proj,
v_proj stacked along the output dim ([q | k | v]). Everything else is renamed one to one.
transformers is imported lazily (only by to_hf / from_hf); the rest is plain tensors.
"""

from __future__ import annotations

import torch

from .config import ModelConfig
from .phi import PhiLM

# Primer name (after "blocks.{i}.") -> HF name (after "model.layers.{i}.")
_LAYER_RENAMES = {
    "ln.weight": "input_layernorm.weight",
    "ln.bias": "input_layernorm.bias",
    "attn.dense.weight": "self_attn.dense.weight",
    "attn.dense.bias": "self_attn.dense.bias",
    "mlp.fc1.weight": "mlp.fc1.weight",
    "mlp.fc1.bias": "mlp.fc1.bias",
    "mlp.fc2.weight": "mlp.fc2.weight",
    "mlp.fc2.bias": "mlp.fc2.bias",
}
_TOP_RENAMES = {
    "embed.weight": "model.embed_tokens.weight",
    "ln_f.weight": "model.final_layernorm.weight",
    "ln_f.bias": "model.final_layernorm.bias",
    "lm_head.weight": "lm_head.weight",
    "lm_head.bias": "lm_head.bias",
}


def to_hf_config(cfg: ModelConfig) -> dict:
    """Keyword arguments for `transformers.PhiConfig(**d)` describing the same network."""
    return dict(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.d_model,
        intermediate_size=cfg.d_mlp,
        num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head,
        num_key_value_heads=cfg.n_head,
        hidden_act="gelu_new",
        max_position_embeddings=cfg.max_seq_len,
        layer_norm_eps=cfg.layer_norm_eps,
        resid_pdrop=cfg.resid_dropout,
        embd_pdrop=cfg.embd_dropout,
        attention_dropout=cfg.attn_dropout,
        initializer_range=cfg.init_std,
        tie_word_embeddings=cfg.tie_embeddings,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": cfg.rope_theta,
            "partial_rotary_factor": cfg.rotary_dim / cfg.head_dim,
        },
        qk_layernorm=False,
        bos_token_id=cfg.eos_token_id,
        eos_token_id=cfg.eos_token_id,
    )


def from_hf_config(hf) -> ModelConfig:
    """ModelConfig from a `transformers.PhiConfig` (or its to_dict()). Rejects features Primer lacks."""
    d = hf if isinstance(hf, dict) else hf.to_dict()
    n_head = d["num_attention_heads"]
    head_dim = d["hidden_size"] // n_head
    rope = d.get("rope_parameters") or {}
    prf = rope.get("partial_rotary_factor", d.get("partial_rotary_factor", 0.5))
    if d.get("qk_layernorm"):
        raise ValueError("qk_layernorm=True is not supported")
    if d.get("num_key_value_heads") not in (None, n_head):
        raise ValueError("grouped-query attention (num_key_value_heads != num_attention_heads) is not supported")
    if d.get("hidden_act", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
        raise ValueError(f"hidden_act={d['hidden_act']!r} is not supported (Primer uses tanh-approx GELU)")
    if rope.get("rope_type", "default") != "default":
        raise ValueError(f"rope_type={rope['rope_type']!r} is not supported")
    eos = d.get("eos_token_id")
    eos = eos[0] if isinstance(eos, list) else eos
    return ModelConfig(
        vocab_size=d["vocab_size"],
        n_layer=d["num_hidden_layers"],
        n_head=n_head,
        d_model=d["hidden_size"],
        d_mlp=d["intermediate_size"],
        rotary_dim=int(head_dim * prf),
        rope_theta=float(rope.get("rope_theta", d.get("rope_theta", 10000.0))),
        max_seq_len=d["max_position_embeddings"],
        embd_dropout=float(d.get("embd_pdrop", 0.0)),
        resid_dropout=float(d.get("resid_pdrop", 0.0)),
        attn_dropout=float(d.get("attention_dropout") or 0.0),
        layer_norm_eps=d.get("layer_norm_eps", 1e-5),
        eos_token_id=0 if eos is None else int(eos),
        tie_embeddings=bool(d.get("tie_word_embeddings", False)),
        init_std=d.get("initializer_range", 0.02),
    ).validate()


def to_hf_state_dict(model: PhiLM) -> dict[str, torch.Tensor]:
    """HF-named tensors (views/splits of the model's own; clone before mutating).

    With tie_embeddings, lm_head.weight and model.embed_tokens.weight are the same tensor; callers that
    write safetensors should drop lm_head.weight (HF re-ties on load) or clone it.
    """
    sd = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k in _TOP_RENAMES:
            out[_TOP_RENAMES[k]] = v
            continue
        _, i, rest = k.split(".", 2)  # "blocks", "{i}", "attn.qkv.weight"
        prefix = f"model.layers.{i}."
        if rest in ("attn.qkv.weight", "attn.qkv.bias"):
            kind = rest.rsplit(".", 1)[1]
            for name, part in zip(("q_proj", "k_proj", "v_proj"), v.chunk(3, dim=0)):
                out[f"{prefix}self_attn.{name}.{kind}"] = part
        else:
            out[prefix + _LAYER_RENAMES[rest]] = v
    return out


def from_hf_state_dict(sd: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """HF Phi state dict -> a state dict for `PhiLM(cfg).load_state_dict(...)` (strict)."""
    inv_top = {v: k for k, v in _TOP_RENAMES.items()}
    inv_layer = {v: k for k, v in _LAYER_RENAMES.items()}
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k in inv_top:
            out[inv_top[k]] = v
        elif k.startswith("model.layers."):
            i, rest = k[len("model.layers."):].split(".", 1)
            if rest.startswith("self_attn.") and rest.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
                continue  # fused below
            if rest not in inv_layer:
                raise KeyError(f"unexpected HF key {k!r}")
            out[f"blocks.{i}.{inv_layer[rest]}"] = v
        elif "rotary_emb" in k:
            continue  # derived buffers
        else:
            raise KeyError(f"unexpected HF key {k!r}")
    for i in range(cfg.n_layer):
        p = f"model.layers.{i}.self_attn."
        for kind in ("weight", "bias"):
            out[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat([sd[f"{p}{n}.{kind}"] for n in ("q_proj", "k_proj", "v_proj")])
    if cfg.tie_embeddings:
        out["lm_head.weight"] = out["embed.weight"]
    return out


def to_hf(model: PhiLM, attn_implementation: str = "sdpa"):
    """A `transformers.PhiForCausalLM` with the same weights (copied), in eval mode."""
    from transformers import PhiConfig, PhiForCausalLM

    ref = next(model.parameters())
    with torch.device(ref.device):
        hf = PhiForCausalLM(PhiConfig(**to_hf_config(model.cfg), attn_implementation=attn_implementation))
    hf.to(ref.dtype)
    missing, unexpected = hf.load_state_dict(to_hf_state_dict(model), strict=False)
    missing = [k for k in missing if "rotary_emb" not in k]
    if missing or unexpected:
        raise RuntimeError(f"HF conversion mismatch: missing={missing} unexpected={unexpected}")
    return hf.eval()


def from_hf(hf_model) -> PhiLM:
    """A PhiLM with the weights of a `transformers.PhiForCausalLM` (copied), in eval mode."""
    cfg = from_hf_config(hf_model.config)
    ref = next(hf_model.parameters())
    with torch.device(ref.device):
        model = PhiLM(cfg)
    model.to(ref.dtype)
    model.load_state_dict(from_hf_state_dict(hf_model.state_dict(), cfg))
    return model.eval()
