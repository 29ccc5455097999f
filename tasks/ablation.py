"""Metrics for comparing data mixtures at equal token budgets (phi-1, Figure 2.1, at small scale).

Pass@1 of a tiny model is ~0 for every arm, so next to it the ablation reports a measure that moves at
small scale: the mean next-token loss of each model on HumanEval's reference programs (prompt + canonical
solution), i.e. how well the model predicts the kind of code the benchmark asks for. Lower is better.
All arms share one tokenizer, so their losses are comparable.
"""

from __future__ import annotations

from typing import Any

import torch
from tokenizers import Tokenizer

from primer.store import ArtifactStore


def humaneval_texts(limit: int = 0) -> list[str]:
    from primer.scoring import humaneval

    problems = humaneval.load_problems()  # task_id -> HumanEvalProblem, in file order
    texts = [p.prompt + p.canonical_solution for p in problems.values()]
    return texts[:limit] if limit else texts


def load_checkpoint_model(store: ArtifactStore, checkpoint: dict[str, Any]):
    """A PhiLM with a checkpoint's consolidated fp32 weights (its `weights` and `model_config.json`)."""
    from safetensors.torch import load

    from model import ModelConfig, PhiLM

    cfg = ModelConfig.from_dict(store.read_json(store.resolve(checkpoint["uri"]) + "/model_config.json"))
    model = PhiLM(cfg)
    model.load_state_dict(load(store.read_bytes(store.resolve(checkpoint["weights"]))))
    return model.eval()


@torch.no_grad()
def mean_token_loss(model, tokenizer: Tokenizer, texts: list[str], max_len: int) -> float:
    """Mean next-token cross entropy over `texts`, each scored on its own (truncated to max_len tokens)."""
    total, count = 0.0, 0
    for text in texts:
        ids = tokenizer.encode(text).ids[:max_len]
        if len(ids) < 2:
            continue
        x = torch.tensor([ids])
        _, loss = model(x[:, :-1], x[:, 1:])
        total += loss.item() * (len(ids) - 1)
        count += len(ids) - 1
    return total / max(1, count)
