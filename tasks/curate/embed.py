"""Embedders: documents -> feature vectors for the quality classifier (pluggable, `curate.embedder`).

* `hashed` (default, offline, no download): scikit-learn `HashingVectorizer` over code-token unigrams and
  bigrams (identifiers, keywords, punctuation: `def`, `#`, triple quotes, `self .` ...). Stateless, so the same
  text always maps to the same vector in every process.
* `transformer`: mean-pooled last hidden state of a local Hugging Face model (`embed_model` = a path);
  phi-1 used a pretrained code model's embeddings this way. Needs `transformers` + `torch`.
* `endpoint`: an OpenAI-compatible `/embeddings` endpoint (model `embed_model`), via the `openai` client;
  base URL and API key from the teacher settings or OPENAI_BASE_URL / OPENAI_API_KEY.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, is_dataclass
from functools import lru_cache
from typing import Any, Protocol

import numpy as np

from primer.errors import ConfigError


class Embedder(Protocol):
    def spec(self) -> dict[str, Any]: ...

    def embed(self, texts: list[str]) -> Any: ...


EMBED_CHARS = 20_000
# identifiers, numbers, and single punctuation (so `#`, `"""`, `def`, `self.` shape the features too)
TOKEN_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*|\d+|\S"


_COMMENT = re.compile(r"^\s*#", re.M)
_DEF = re.compile(r"^\s*(?:async\s+)?def\s+(\w+)", re.M)
_CLASS = re.compile(r"^\s*class\s", re.M)
_IMPORT = re.compile(r"^\s*(?:import|from)\s", re.M)
_RELATIVE = re.compile(r"^\s*from\s+\.", re.M)
_DOCSTRING_AFTER_DEF = re.compile(r"^\s*(?:async\s+)?(?:def|class)\s[^\n]*:\s*\n\s*[rRuU]?(?:\"\"\"|\'\'\')", re.M)
_MODULE_DOC = re.compile(r"\A(?:\s*#[^\n]*\n)*\s*[rRuU]?(?:\"\"\"|\'\'\')")
STRUCTURE_WEIGHT = 0.5   # the dense block's share next to the l2-normalized token block


def structure_features(text: str) -> list[float]:
    """A dozen layout facts a reader of code sees at a glance (regular expressions, no parse): how much is
    commented and documented, examples, size and shape, imports, tests and private plumbing. Each in ~[0, 1]."""
    lines = text.count("\n") + 1
    nonblank = sum(1 for ln in text.splitlines() if ln.strip()) or 1
    names = _DEF.findall(text)
    defs = len(names) + len(_CLASS.findall(text))
    funcs = len(names) or 1
    return [
        min(1.0, len(_COMMENT.findall(text)) / nonblank * 4),
        min(1.0, len(_DOCSTRING_AFTER_DEF.findall(text)) / max(1, defs)),
        1.0 if _MODULE_DOC.match(text) else 0.0,
        1.0 if ">>> " in text else 0.0,
        1.0 if "__main__" in text else 0.0,
        min(1.0, math.log1p(len(names)) / 5),
        min(1.0, math.log1p(len(_IMPORT.findall(text))) / 4),
        1.0 if _RELATIVE.search(text) else 0.0,
        sum(1 for n in names if n.startswith("test")) / funcs,
        sum(1 for n in names if n.startswith("_") and not n.endswith("__")) / funcs,
        min(1.0, math.log1p(lines) / 9),
        min(1.0, len(text) / nonblank / 100),
        min(1.0, nonblank / max(1, len(names)) / 60),
    ]


class HashedEmbedder:
    """Token unigrams + bigrams of the first 20,000 characters hashed into `n_features` (l2-normalized),
    followed by `structure_features` (weighted by STRUCTURE_WEIGHT). Offline, stateless, the same vector for
    the same text in every process."""

    def __init__(self, n_features: int = 1 << 14):
        from sklearn.feature_extraction.text import HashingVectorizer

        self.n_features = n_features
        self.vectorizer = HashingVectorizer(token_pattern=TOKEN_PATTERN, ngram_range=(1, 2), lowercase=False,
                                            n_features=n_features, alternate_sign=False, norm="l2")

    def spec(self) -> dict[str, Any]:
        return {"kind": "hashed", "n_features": self.n_features, "chars": EMBED_CHARS, "version": 3,
                "structure": len(structure_features("")), "structure_weight": STRUCTURE_WEIGHT}

    def embed(self, texts: list[str]):
        from scipy.sparse import csr_matrix, hstack

        tokens = self.vectorizer.transform([t[:EMBED_CHARS] for t in texts])
        dense = np.array([structure_features(t) for t in texts], dtype=np.float64).reshape(len(texts), -1)
        return hstack([tokens, csr_matrix(dense * STRUCTURE_WEIGHT)], format="csr")


class TransformerEmbedder:
    def __init__(self, model_path: str, max_tokens: int = 512, batch_size: int = 8):
        try:
            import torch  # noqa: F401
            from transformers import AutoModel, AutoTokenizer
        except ImportError:
            raise ConfigError("curate.embedder=transformer needs `transformers` and `torch` installed; "
                              "use curate.embedder=hashed for an offline run") from None
        if not os.path.exists(model_path):
            raise ConfigError(f"curate.embed_model {model_path!r}: no such local model folder")
        self.model_path, self.max_tokens, self.batch_size = model_path, max_tokens, batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModel.from_pretrained(model_path).eval()

    def spec(self) -> dict[str, Any]:
        return {"kind": "transformer", "model": os.path.abspath(self.model_path), "max_tokens": self.max_tokens}

    def embed(self, texts: list[str]) -> np.ndarray:
        import torch

        out = []
        with torch.no_grad():
            for i in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(texts[i:i + self.batch_size], truncation=True, max_length=self.max_tokens,
                                       padding=True, return_tensors="pt")
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                out.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).float().numpy())
        return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


class EndpointEmbedder:
    def __init__(self, model: str, base_url: str = "", api_key: str = "", max_chars: int = 8000,
                 batch_size: int = 32):
        import openai

        self.model, self.max_chars, self.batch_size = model, max_chars, batch_size
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL", "")
        self.client = openai.OpenAI(base_url=self.base_url or None,
                                    api_key=api_key or os.environ.get("OPENAI_API_KEY") or "unused",
                                    max_retries=5, timeout=60)

    def spec(self) -> dict[str, Any]:
        return {"kind": "endpoint", "model": self.model, "base_url": self.base_url, "max_chars": self.max_chars}

    def embed(self, texts: list[str]) -> np.ndarray:
        out = []
        for i in range(0, len(texts), self.batch_size):
            batch = [t[: self.max_chars] for t in texts[i:i + self.batch_size]]
            resp = self.client.embeddings.create(model=self.model, input=batch)
            out.extend(np.asarray(d.embedding, dtype=np.float32) for d in sorted(resp.data, key=lambda d: d.index))
        return np.stack(out) if out else np.zeros((0, 1), np.float32)


def make_embedder(cfg, teacher_cfg: Any = None) -> Embedder:
    if cfg.embedder == "hashed":
        return HashedEmbedder(cfg.embed_features)
    if cfg.embedder == "transformer":
        return TransformerEmbedder(cfg.embed_model)
    base_url = getattr(teacher_cfg, "base_url", "") or ""
    key_env = getattr(teacher_cfg, "api_key_env", "") or "OPENAI_API_KEY"
    return EndpointEmbedder(cfg.embed_model, base_url=base_url, api_key=os.environ.get(key_env, ""))


@lru_cache(maxsize=2)
def _cached_embedder(cfg_json: str, teacher_json: str) -> Embedder:
    from primer.settings.curate import CurateConfig

    cfg = CurateConfig(**{k: v for k, v in json.loads(cfg_json).items() if k != "sources"})
    teacher = json.loads(teacher_json)
    return make_embedder(cfg, type("T", (), teacher)() if teacher else None)


def embedder_for(cfg, teacher_cfg: Any = None) -> Embedder:
    """The configured embedder, built once per process for a given configuration (keyed by its JSON, so
    any worker process builds the same one from the task's arguments alone)."""
    section = {k: v for k, v in asdict(cfg).items() if k != "sources"}
    teacher = asdict(teacher_cfg) if is_dataclass(teacher_cfg) else {}
    return _cached_embedder(json.dumps(section, sort_keys=True), json.dumps(teacher, sort_keys=True, default=str))
