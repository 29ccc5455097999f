"""Primer's model: the phi-1 decoder in pure PyTorch (no Prefect, no storage, nothing else from Primer).

    from model import ModelConfig, preset, num_params, PhiLM, generate
    cfg = preset("tiny", vocab_size=tok.get_vocab_size(), eos_token_id=eos)
    model = PhiLM(cfg)
    logits, loss = model(x, targets=y)            # packed rows: EOS ends a document
    outs = generate(model, prompts, 256, stop=["\ndef "], decode=tok.decode)

HF conversion lives in model.hf (imports transformers lazily). See docs/model.md.
"""

from .config import PRESETS, ModelConfig, num_params, preset
from .generate import Generation, generate
from .phi import PhiLM

__all__ = ["ModelConfig", "PRESETS", "preset", "num_params", "PhiLM", "generate", "Generation"]
