"""Generation backends: one protocol, three implementations (Primer checkpoints, transformers, OpenAI API).

    backend.generate(prompts, max_new_tokens=128, stop=["\\ndef "], temperature=0.0, top_p=1.0, n=1)
        -> list[list[str]]      # per prompt, n completions (text only, cut at the earliest stop)

Every backend returns the completion *without* the prompt and cut before the earliest stop sequence
(the stop itself is dropped), so the harness treats them alike. `fingerprint()` describes the model for
result files (weights hash, endpoint, ...).

- `PrimerBackend`: PhiLM + a `tokenizers.Tokenizer`; batched KV-cache generation (`model.generate`),
  prompts sorted by length so batches pad little. A prompt longer than `max_seq_len - max_new_tokens`
  keeps its last tokens (counted in `stats["prompts_truncated"]`).
- `HFBackend`: `transformers.PhiForCausalLM` + `PreTrainedTokenizerFast` from a release directory
  (left padding, `generate(stop_strings=...)`).
- `OpenAIBackend`: any OpenAI-compatible `/v1/completions` endpoint (base models), `n` samples per request,
  our own retries on 429 / 5xx / timeouts / connection errors (honouring Retry-After). At most 4 stop
  sequences are sent (the OpenAI limit); every stop is applied client-side, which gives the same text
  for greedy decoding.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

log = logging.getLogger("primer.scoring")
OPENAI_MAX_STOPS = 4


@runtime_checkable
class Backend(Protocol):
    name: str

    def generate(self, prompts: list[str], *, max_new_tokens: int, stop: list[str], temperature: float,
                 top_p: float, n: int) -> list[list[str]]: ...

    def fingerprint(self) -> dict[str, Any]: ...


def cut_at_stops(text: str, stop: Sequence[str]) -> tuple[str, str | None]:
    """(text before the earliest stop, that stop or None)."""
    best, hit = len(text), None
    for s in stop:
        if not s:
            continue
        i = text.find(s)
        if i != -1 and i < best:
            best, hit = i, s
    return text[:best], hit


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def torch_dtype(name: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


@dataclass
class Completion:
    """One generated sample with the bookkeeping `primer serve` reports."""

    text: str
    finish_reason: str          # "stop" (a stop sequence or EOS) | "length"
    prompt_tokens: int
    completion_tokens: int


@dataclass
class PrimerBackend:
    """A PhiLM and its tokenizer. Thread-safe (one generation at a time)."""

    model: Any                  # model.PhiLM, eval mode, on its device
    tokenizer: Any              # tokenizers.Tokenizer
    batch_size: int = 16
    seed: int = 1234
    name: str = "primer"
    meta: dict[str, Any] = field(default_factory=dict)   # weights hash, source URI: goes into fingerprint()
    stats: dict[str, int] = field(default_factory=lambda: {"prompts_truncated": 0, "sequences": 0})

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.tokenizer.encode_special_tokens = True   # a literal <|endoftext|> in a prompt is text, as in pack

    def fingerprint(self) -> dict[str, Any]:
        return {"backend": "primer", **self.meta}

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def generate(self, prompts: list[str], *, max_new_tokens: int, stop: list[str], temperature: float = 0.0,
                 top_p: float = 1.0, n: int = 1) -> list[list[str]]:
        done = self.complete(prompts, max_new_tokens=max_new_tokens, stop=stop, temperature=temperature,
                             top_p=top_p, n=n)
        return [[c.text for c in row] for row in done]

    def complete(self, prompts: list[str], *, max_new_tokens: int, stop: Sequence[str] = (),
                 temperature: float = 0.0, top_p: float = 1.0, n: int = 1,
                 seed: int | None = None) -> list[list[Completion]]:
        """Like `generate`, with finish reasons and token counts. Greedy rows are generated once per prompt
        (n identical copies are returned); sampled rows are n independent sequences."""
        import torch

        from model import generate as model_generate

        if not prompts:
            return []
        max_len = self.model.cfg.max_seq_len
        if max_new_tokens >= max_len:
            raise ValueError(f"max_new_tokens ({max_new_tokens}) must be < the model's max_seq_len ({max_len})")
        keep = max_len - max_new_tokens
        encoded = [self.encode(p) for p in prompts]
        copies = 1 if temperature <= 0 else n
        jobs = [(i, j) for i in range(len(prompts)) for j in range(copies)]
        ids = []
        for i, _ in jobs:
            toks = encoded[i] or [self.model.cfg.eos_token_id]   # an empty prompt starts a document
            ids.append(toks[-keep:])
        truncated = sum(len(e) > keep for e in encoded)
        order = sorted(range(len(jobs)), key=lambda r: len(ids[r]))   # similar lengths batch together
        results: list[Completion | None] = [None] * len(jobs)
        stops = [s for s in stop if s]
        with self._lock:
            self.stats["prompts_truncated"] += truncated
            self.stats["sequences"] += len(jobs)
            gen = torch.Generator(device=self.model.embed.weight.device)
            gen.manual_seed(self.seed if seed is None else seed)
            for start in range(0, len(order), self.batch_size):
                rows = order[start:start + self.batch_size]
                outs = model_generate(self.model, [ids[r] for r in rows], max_new_tokens, temperature=temperature,
                                      top_p=top_p, stop=stops, decode=self.decode, generator=gen)
                for r, g in zip(rows, outs):
                    text, hit = cut_at_stops(self.decode(g.tokens), stops)
                    reason = "stop" if (hit is not None or g.finish_reason in ("eos", "stop")) else "length"
                    results[r] = Completion(text, reason, len(encoded[jobs[r][0]]), len(g.tokens))
        out: list[list[Completion]] = [[] for _ in prompts]
        for (i, _), c in zip(jobs, results):
            out[i].append(c)
        if copies == 1 and n > 1:
            out = [row * n for row in out]
        return out


class HFBackend:
    """`transformers` PhiForCausalLM + tokenizer loaded from a release directory (what users of the export
    would run)."""

    name = "hf"

    def __init__(self, directory: str, *, device: str = "auto", dtype: str = "fp32", batch_size: int = 16,
                 seed: int = 1234, meta: dict[str, Any] | None = None):
        from transformers import PhiForCausalLM, PreTrainedTokenizerFast

        self.device = resolve_device(device)
        self.model = PhiForCausalLM.from_pretrained(directory, dtype=torch_dtype(dtype)).to(self.device).eval()
        self.tokenizer = PreTrainedTokenizerFast.from_pretrained(directory)
        self.tokenizer.padding_side = "left"
        self.batch_size, self.seed = batch_size, seed
        self.meta = {"directory": str(directory), **(meta or {})}
        self._lock = threading.Lock()

    def fingerprint(self) -> dict[str, Any]:
        return {"backend": "hf", **self.meta}

    def generate(self, prompts: list[str], *, max_new_tokens: int, stop: list[str], temperature: float = 0.0,
                 top_p: float = 1.0, n: int = 1) -> list[list[str]]:
        import torch

        max_len = self.model.config.max_position_embeddings
        keep = max_len - max_new_tokens
        greedy = temperature <= 0
        copies = 1 if greedy else n
        eos = self.tokenizer.eos_token_id
        out: list[list[str]] = [[] for _ in prompts]
        stops = [s for s in stop if s]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        per_batch = max(1, self.batch_size // copies)
        with self._lock, torch.no_grad():
            torch.manual_seed(self.seed)
            for start in range(0, len(order), per_batch):
                rows = order[start:start + per_batch]
                enc = [self.tokenizer(prompts[i], add_special_tokens=False)["input_ids"][-keep:] or [eos]
                       for i in rows]
                batch = self.tokenizer.pad({"input_ids": enc}, padding=True, return_tensors="pt")
                kwargs: dict[str, Any] = dict(max_new_tokens=max_new_tokens, pad_token_id=eos, eos_token_id=eos,
                                              num_return_sequences=copies)
                if greedy:
                    kwargs.update(do_sample=False)
                else:
                    kwargs.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
                if stops:
                    kwargs.update(stop_strings=stops, tokenizer=self.tokenizer)
                gen = self.model.generate(input_ids=batch["input_ids"].to(self.device),
                                          attention_mask=batch["attention_mask"].to(self.device), **kwargs)
                new = gen[:, batch["input_ids"].shape[1]:].tolist()
                for k, i in enumerate(rows):
                    for seq in new[k * copies:(k + 1) * copies]:
                        if eos in seq:
                            seq = seq[:seq.index(eos)]
                        text, _ = cut_at_stops(self.tokenizer.decode(seq, skip_special_tokens=False), stops)
                        out[i].append(text)
        if copies == 1 and n > 1:
            out = [row * n for row in out]
        return out


class OpenAIBackend:
    """Any OpenAI-compatible `/v1/completions` endpoint."""

    name = "openai"

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, concurrency: int = 4,
                 timeout_s: float = 300.0, max_retries: int = 6, backoff_base_s: float = 1.0,
                 backoff_max_s: float = 30.0, seed: int | None = None):
        import openai

        from primer import secrets

        key = api_key or "sk-no-key"
        secrets.register(key)
        self.base_url, self.model = base_url, model
        self.client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=timeout_s)
        self.concurrency, self.max_retries = concurrency, max_retries
        self.backoff_base_s, self.backoff_max_s = backoff_base_s, backoff_max_s
        self.seed = seed
        self.stats = {"requests": 0, "retries": 0, "prompt_tokens": 0, "completion_tokens": 0}
        self._stats_lock = threading.Lock()

    @classmethod
    def from_config(cls, endpoint, seed: int | None = None) -> "OpenAIBackend":
        return cls(endpoint.base_url, endpoint.model, api_key=os.environ.get(endpoint.api_key_env) or None,
                   concurrency=endpoint.concurrency, timeout_s=endpoint.timeout_s, max_retries=endpoint.max_retries,
                   backoff_base_s=endpoint.backoff_base_s, backoff_max_s=endpoint.backoff_max_s, seed=seed)

    def fingerprint(self) -> dict[str, Any]:
        return {"backend": "openai", "base_url": self.base_url, "model": self.model}

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, 600.0)
        cap = min(self.backoff_max_s, self.backoff_base_s * (2 ** attempt))
        return cap / 2 + random.uniform(0, cap / 2)

    def _one(self, prompt: str, body: dict[str, Any], n: int, stop: list[str]) -> list[str]:
        import openai

        attempt = 0
        while True:
            try:
                with self._stats_lock:
                    self.stats["requests"] += 1
                data = self.client.post("/completions", cast_to=object, body={**body, "prompt": prompt, "n": n})
                choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
                texts = [c["text"] for c in choices]
                if len(texts) != n or not all(isinstance(t, str) for t in texts):
                    raise ValueError(f"expected {n} text choices, got {len(texts)}")
                usage = data.get("usage") or {}
                with self._stats_lock:
                    self.stats["prompt_tokens"] += int(usage.get("prompt_tokens") or 0)
                    self.stats["completion_tokens"] += int(usage.get("completion_tokens") or 0)
                return [cut_at_stops(t, stop)[0] for t in texts]
            except (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError,
                    openai.APIConnectionError, openai.APIStatusError, ValueError, KeyError, TypeError) as e:
                status = getattr(e, "status_code", None)
                retriable = not isinstance(e, openai.APIStatusError) or status == 429 or (status or 0) >= 500 \
                    or status in (408, 409)
                if not retriable or attempt >= self.max_retries:
                    raise
                retry_after = None
                resp = getattr(e, "response", None)
                if resp is not None:
                    try:
                        ms = resp.headers.get("retry-after-ms")
                        retry_after = float(ms) / 1000 if ms else float(resp.headers.get("retry-after"))
                    except (TypeError, ValueError):
                        retry_after = None
                wait = self._delay(attempt, retry_after)
                log.info("endpoint %s: %s, retry %d in %.2fs", self.base_url, type(e).__name__, attempt + 1, wait)
                with self._stats_lock:
                    self.stats["retries"] += 1
                time.sleep(wait)
                attempt += 1

    def generate(self, prompts: list[str], *, max_new_tokens: int, stop: list[str], temperature: float = 0.0,
                 top_p: float = 1.0, n: int = 1) -> list[list[str]]:
        stops = [s for s in stop if s]
        greedy = temperature <= 0
        body: dict[str, Any] = {"model": self.model, "max_tokens": max_new_tokens, "temperature": temperature,
                                "top_p": 1.0 if greedy else top_p}
        if stops:
            body["stop"] = stops[:OPENAI_MAX_STOPS]
        if self.seed is not None:
            body["seed"] = self.seed
        per_request = 1 if greedy else n
        with ThreadPoolExecutor(max(1, min(self.concurrency, len(prompts) or 1))) as ex:
            rows = list(ex.map(lambda p: self._one(p, body, per_request, stops), prompts))
        return [row * n if greedy and n > 1 else row for row in rows]
