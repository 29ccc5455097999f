"""The teacher endpoint and synthetic generation (owned by the synthesize stage)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from primer.errors import ConfigError
from primer.settings import knob

# USD per 1M tokens (input, output). Longest matching prefix wins; override with teacher.price_input/output.
DEFAULT_PRICES: dict[str, list[float]] = {
    "gpt-4o-mini": [0.15, 0.60],
    "gpt-4o": [2.50, 10.00],
    "gpt-4.1-nano": [0.10, 0.40],
    "gpt-4.1-mini": [0.40, 1.60],
    "gpt-4.1": [2.00, 8.00],
    "gpt-4-turbo": [10.00, 30.00],
    "gpt-4": [30.00, 60.00],
    "gpt-3.5-turbo": [0.50, 1.50],
}


@dataclass
class TeacherConfig:
    """Any OpenAI-compatible endpoint (OpenAI, Azure-compatible proxies, vLLM, llama.cpp, ...).

    The key is never configuration: it is read from the environment variable named by `api_key_env`, or
    from the Prefect Secret block named by `secret_block`.
    """

    base_url: str = knob("", help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1. Empty: "
                                  "$OPENAI_BASE_URL, else the OpenAI API when a key is set.")
    model: str = knob("gpt-4o-mini", help="Model name sent to the endpoint.")
    api: str = knob("chat", help="Endpoint flavour: chat = /chat/completions, completions = /completions.",
                    choices=("chat", "completions"))
    api_key_env: str = knob("OPENAI_API_KEY", help="Name of the environment variable holding the API key.")
    secret_block: str = knob("", help="Name of a Prefect Secret block holding the API key (used when the "
                                      "environment variable is not set).")
    concurrency: int = knob(8, help="Requests in flight at once.", min=1, max=4096)
    timeout_s: float = knob(120.0, help="Per-request timeout in seconds.", min=0.01)
    max_retries: int = knob(6, help="Retries per request on 429, 5xx, timeouts, connection errors and "
                                    "malformed answers.", min=0, max=100)
    backoff_base_s: float = knob(1.0, help="First retry delay; doubles each retry (with jitter).", min=0.0)
    backoff_max_s: float = knob(60.0, help="Longest backoff delay (a server's Retry-After is honoured as given, up to 600 s).", min=0.0)
    temperature: float = knob(0.8, help="Sampling temperature.", min=0.0, max=2.0)
    top_p: float = knob(0.95, help="Nucleus sampling mass.", min=0.0, max=1.0)
    max_tokens: int = knob(1536, help="Most tokens per answer.", min=1)
    seed: int = knob(-1, help="`seed` sent to the endpoint for reproducible sampling; -1 = not sent.")
    prices: dict[str, Any] = knob(default_factory=lambda: {k: list(v) for k, v in DEFAULT_PRICES.items()},
                                  help="USD per 1M tokens [input, output] by model name (longest prefix "
                                       "match), for cost accounting and teacher.max_cost_usd.")
    price_input: float = knob(-1.0, help="USD per 1M input tokens for `model`; -1 = look up `prices`.")
    price_output: float = knob(-1.0, help="USD per 1M output tokens for `model`; -1 = look up `prices`.")
    max_tokens_total: int = knob(0, help="Budget: stop once this many tokens (prompt + completion, counted "
                                         "over the whole ledger) are spent; 0 = no cap.", min=0)
    max_cost_usd: float = knob(0.0, help="Budget: stop once this many USD are spent (whole ledger); "
                                         "0 = no cap.", min=0.0)
    ledger_commit_every: int = knob(64, help="Fold answers into a ledger part on the store every N answers...",
                                    min=1)
    ledger_commit_interval_s: float = knob(5.0, help="...or every T seconds, whichever comes first. Batching "
                                                     "only saves store writes: every answer is durable at once "
                                                     "in a local journal, so a SIGKILL loses nothing answered.",
                                           min=0.0)
    journal_dir: str = knob("", help="Local folder of the answer journals (append-only, flushed per answer). "
                                     "Empty: <store>/ledgers/<name>/journal for a local store, else "
                                     "~/.cache/primer/journal/<store hash>/<name>.")
    mode: str = knob("online", help="online = one HTTP request per answer; batch = the Batch API "
                                    "(/v1/files + /v1/batches: JSONL batches, polled, about half price).",
                     choices=("online", "batch"))
    batch_poll_s: float = knob(30.0, help="Batch mode: seconds between polls of a submitted batch.", min=0.01)
    batch_max_requests: int = knob(50_000, help="Batch mode: most requests in one batch file.", min=1)
    batch_discount: float = knob(0.5, help="Batch mode: price multiplier for cost accounting and budgets.",
                                 min=0.0, max=1.0)
    batch_timeout_s: float = knob(26 * 3600.0, help="Batch mode: give up waiting for a batch after this long "
                                                    "(a re-run resumes it by its id).", min=1.0)
    progress_every_s: float = knob(10.0, help="Seconds between progress log lines of a generation phase.",
                                   min=0.01)

    # ---- derived ------------------------------------------------------------------------------------
    def resolved_base_url(self) -> str:
        return self.base_url or os.environ.get("OPENAI_BASE_URL", "")

    def has_key_source(self) -> bool:
        return bool(os.environ.get(self.api_key_env)) or bool(self.secret_block)

    def is_configured(self) -> bool:
        """False when neither a base URL nor a key is available: the stage is skipped, not failed."""
        return bool(self.resolved_base_url()) or self.has_key_source()

    def skip_reason(self) -> str | None:
        if self.is_configured():
            return None
        return (f"no teacher configured: set teacher.base_url (an OpenAI-compatible endpoint) or the API key "
                f"in ${self.api_key_env} (or a Prefect Secret block named in teacher.secret_block)")

    def price(self) -> tuple[float, float] | None:
        """(input, output) USD per 1M tokens for `model`, or None if unknown."""
        if self.price_input >= 0 and self.price_output >= 0:
            return self.price_input, self.price_output
        best = None
        for name, pair in (self.prices or {}).items():
            if self.model.startswith(name) and (best is None or len(name) > len(best[0])):
                best = (name, pair)
        if best is None:
            return None
        pin, pout = best[1]
        return (self.price_input if self.price_input >= 0 else float(pin),
                self.price_output if self.price_output >= 0 else float(pout))

    def sampling(self) -> dict[str, Any]:
        """Sampling parameters sent with each request (and hashed into its ledger key)."""
        params: dict[str, Any] = {"temperature": self.temperature, "top_p": self.top_p,
                                  "max_tokens": self.max_tokens}
        if self.seed >= 0:
            params["seed"] = self.seed
        return params

    def check(self, path: str = "teacher") -> None:
        for name, pair in (self.prices or {}).items():
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2
                    and all(isinstance(x, (int, float)) and x >= 0 for x in pair)):
                raise ConfigError(f"{path}.prices.{name}: expected [input_usd_per_1M, output_usd_per_1M], "
                                  f"got {pair!r}")
        if self.max_cost_usd > 0 and self.price() is None:
            raise ConfigError(f"{path}.max_cost_usd: no price known for model {self.model!r}; set "
                              f"{path}.price_input and {path}.price_output (USD per 1M tokens)")


@dataclass
class SynthConfig:
    """Synthetic textbooks and exercises (phi-1's "synthetic textbook" and "CodeExercises" data)."""

    enabled: bool = knob(True, help="Run the synthesize stage at all (false: skipped, pipeline goes on).")
    topics_file: str = knob("", help="Topic tree YAML (any store URI); empty = the seed topics shipped in "
                                     "primer/data/topics.yaml.")
    exercise_topics_file: str = knob("", help="Exercise topics/function-name pools YAML; empty = "
                                              "primer/data/topics_exercises.yaml.")
    subtopics_per_topic: int = knob(0, help="Ask the teacher to expand each seed topic into this many "
                                            "subtopics (0 = use the seed topics as they are). Shorthand for "
                                            "topic_fanout=[N].", min=0, max=200)
    topic_fanout: list[int] = knob(default_factory=list, help="Topic tree expansion, one entry per level: "
                                   "[25, 20] asks for 25 subtopics of each seed, then 20 of each of those "
                                   "(47 seeds -> up to 23,500 leaves, deduplicated).")
    textbook_tokens: int = knob(0, help="Target completion tokens of textbooks; the stage plans "
                                        "ceil(target / tokens_per_textbook) requests (0 = use `textbooks`).",
                                min=0)
    exercise_tokens: int = knob(0, help="Target completion tokens of exercises (0 = use `exercises`).", min=0)
    tokens_per_textbook: int = knob(900, help="Expected completion tokens of one textbook answer (planning).",
                                    min=1)
    tokens_per_exercise: int = knob(300, help="Expected completion tokens of one exercise answer (planning).",
                                    min=1)
    exercise_topics_from_tree: bool = knob(False, help="Also use the (expanded) textbook leaf topics as "
                                                       "exercise topics, for more distinct exercise prompts.")
    seed_source: str = knob("", help="A curate output (store URI or ref) whose documents seed textbook "
                                     "prompts with real code extracts (cosmopedia's method); empty = none.")
    seed_fraction: float = knob(0.0, help="Share of textbook requests seeded by code extracts from "
                                          "seed_source.", min=0.0, max=1.0)
    seed_extract_chars: int = knob(1200, help="Longest code extract put in a seeded prompt.", min=100)
    batch_requests: int = knob(256, help="Requests per mapped generation task when parallel_batches > 1 "
                                         "(also exercises per mapped verification task).", min=1)
    parallel_batches: int = knob(1, help="Generation tasks in flight at once on the stage's task runner, "
                                         "each with up to teacher.concurrency requests open; 1 = each phase "
                                         "is one task. A budget cap or teacher.mode=batch forces 1.",
                                 min=1, max=256)
    plan_only: bool = knob(False, help="Print and publish the request plan (counts, tokens, cost, topic "
                                       "coverage, budget) without sending anything (`primer synthesize --plan`).")
    audiences: list[str] = knob(default_factory=lambda: [
        "a beginner who is learning to program", "a computer science undergraduate",
        "an experienced developer who is new to Python"], help="Audiences crossed with topics and styles.")
    styles: list[str] = knob(default_factory=lambda: [
        "concise and example-driven", "step by step, building one example up gradually",
        "Socratic: pose a question, then answer it with code"], help="Writing styles crossed with topics.")
    textbooks: int = knob(24, help="Textbook sections to request when textbook_tokens is 0 (distinct topic x "
                                   "audience x style combinations; never more than exist).", min=0)
    exercises: int = knob(24, help="Exercises to request when exercise_tokens is 0.", min=0)
    seed: int = knob(1234, help="Seed for choosing combinations and function names.")
    min_chars: int = knob(400, help="Textbook sections shorter than this are dropped (too_short).", min=0)
    max_chars: int = knob(30_000, help="Textbook sections longer than this are dropped (too_long).", min=1)
    min_code_blocks: int = knob(1, help="Textbook sections need at least this many Python code blocks.",
                                min=0)
    dedup_threshold: float = knob(0.8, help="Near-duplicate threshold (Jaccard of word 5-gram MinHash); "
                                            "1.0 = exact duplicates only.", min=0.0, max=1.0)
    verify: bool = knob(True, help="Run each exercise's solution against its tests in the sandbox.")
    verify_timeout_s: float = knob(10.0, help="Sandbox time limit per exercise.", min=0.1)
    keep_unverified: bool = knob(True, help="Keep failed exercises in the table (verified=false, with "
                                            "failure_reason); the `text` of those is still written.")
    variants_per_exercise: int = knob(0, help="Augmentation: semantics-preserving variants (renamed "
                                              "identifiers, reworded docstring) per verified exercise, each "
                                              "re-verified.", min=0, max=20)
    ledger: str = knob("synthesize", help="Ledger name (store path ledgers/<name>/): answers already paid "
                                          "for are never requested again.")
    samples: int = knob(3, help="Samples of each kind shown in the markdown artifact.", min=0)

    # Knobs that change how the stage runs, not what it makes: left out of the content key.
    OPERATIONAL = ("plan_only", "batch_requests", "parallel_batches", "samples")

    def content_fields(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {k: v for k, v in asdict(self).items() if k not in self.OPERATIONAL}

    def fanout(self) -> list[int]:
        """Subtopics per level of the topic tree ([] = the seed topics as they are)."""
        if self.topic_fanout:
            return [int(x) for x in self.topic_fanout]
        return [self.subtopics_per_topic] if self.subtopics_per_topic > 0 else []

    def check(self, path: str = "synth") -> None:
        for i, k in enumerate(self.topic_fanout or []):
            if not isinstance(k, int) or not 1 <= k <= 200:
                raise ConfigError(f"{path}.topic_fanout[{i}]: expected a whole number of subtopics from 1 to "
                                  f"200, got {k!r}")
        if self.seed_fraction > 0 and not self.seed_source:
            raise ConfigError(f"{path}.seed_fraction={self.seed_fraction:g} needs {path}.seed_source (a curate "
                              "output URI) to take code extracts from; set it or set seed_fraction to 0")
