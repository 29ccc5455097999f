"""Model configuration: one dataclass, three presets, an analytic parameter count.

The architecture is phi-1's (arXiv 2306.11644), which is also Hugging Face's `PhiForCausalLM`:
decoder-only, one LayerNorm per block feeding attention and MLP in parallel, partial rotary
embeddings, tanh-approximated GELU, biases everywhere, final LayerNorm, LM head with a bias.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class ModelConfig:
    vocab_size: int = 51200
    n_layer: int = 24
    n_head: int = 32
    d_model: int = 2048
    d_mlp: int = 8192
    rotary_dim: int = 32  # rotary is applied to the first rotary_dim dims of each head (phi-1: 32 of 64)
    rope_theta: float = 10000.0
    max_seq_len: int = 2048
    embd_dropout: float = 0.0  # after the token embedding
    resid_dropout: float = 0.0  # on the attention and MLP outputs, before they join the residual
    attn_dropout: float = 0.0  # on the attention probabilities
    layer_norm_eps: float = 1e-5
    eos_token_id: int = 0  # documents in a packed row end with this token (see model/packing.py)
    tie_embeddings: bool = False  # phi-1 does not tie; the LM head keeps its bias either way
    init_std: float = 0.02

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    def validate(self) -> "ModelConfig":
        """Raise ValueError naming the first bad field; return self so calls can chain."""

        def bad(field: str, why: str) -> None:
            raise ValueError(f"ModelConfig.{field}={getattr(self, field)!r}: {why}")

        for f in ("vocab_size", "n_layer", "n_head", "d_model", "d_mlp", "max_seq_len"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                bad(f, "must be a positive int")
        if self.d_model % self.n_head:
            bad("d_model", f"must be divisible by n_head={self.n_head}")
        if not isinstance(self.rotary_dim, int) or self.rotary_dim < 0:
            bad("rotary_dim", "must be a non-negative int")
        if self.rotary_dim > self.head_dim:
            bad("rotary_dim", f"must be <= head_dim={self.head_dim}")
        if self.rotary_dim % 2:
            bad("rotary_dim", "must be even (rotary rotates pairs of dims)")
        if not self.rope_theta > 0:
            bad("rope_theta", "must be > 0")
        for f in ("embd_dropout", "resid_dropout", "attn_dropout"):
            if not 0.0 <= getattr(self, f) < 1.0:
                bad(f, "must be in [0, 1)")
        if not self.layer_norm_eps > 0:
            bad("layer_norm_eps", "must be > 0")
        if not isinstance(self.eos_token_id, int) or not 0 <= self.eos_token_id < self.vocab_size:
            bad("eos_token_id", f"must be an int in [0, vocab_size={self.vocab_size})")
        if not self.init_std > 0:
            bad("init_std", "must be > 0")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"ModelConfig: unknown field(s) {unknown}")
        return cls(**d).validate()


PRESETS: dict[str, dict] = {
    # Runs the whole DAG on 2 CPU cores. Head dim 32, rotary on half of it as in phi-1.
    "tiny": dict(vocab_size=4096, n_layer=4, n_head=4, d_model=128, d_mlp=512, rotary_dim=16, max_seq_len=256),
    # phi-1-small (350M): 356,794,368 params at vocab 51200.
    "phi1_small": dict(vocab_size=51200, n_layer=20, n_head=16, d_model=1024, d_mlp=4096, rotary_dim=32, max_seq_len=2048,
                       eos_token_id=50256),  # <|endoftext|> of the codegen tokenizer phi-1 uses
    # phi-1 (1.3B): 1,418,270,720 params, same as HF PhiConfig defaults with tie_word_embeddings=False.
    "phi1": dict(vocab_size=51200, n_layer=24, n_head=32, d_model=2048, d_mlp=8192, rotary_dim=32, max_seq_len=2048,
                 eos_token_id=50256),
}


def preset(name: str, **overrides) -> ModelConfig:
    """A validated preset config; any field can be overridden, e.g. preset("tiny", vocab_size=8192)."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"ModelConfig: unknown field(s) {unknown}")
    return ModelConfig(**{**PRESETS[name], **overrides}).validate()


def num_params(cfg: ModelConfig) -> int:
    """Exact trainable parameter count, computed from the shapes (equals sum(p.numel()) of PhiLM)."""
    d, m, v, L = cfg.d_model, cfg.d_mlp, cfg.vocab_size, cfg.n_layer
    per_layer = (
        2 * d  # LayerNorm weight + bias
        + 3 * d * d + 3 * d  # fused q, k, v projections
        + d * d + d  # attention output projection ("dense")
        + d * m + m  # fc1
        + m * d + d  # fc2
    )
    embed = v * d
    head = (0 if cfg.tie_embeddings else v * d) + v  # the LM head bias exists even when tied
    return embed + L * per_layer + 2 * d + head
