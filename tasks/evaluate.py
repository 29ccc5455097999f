"""Benchmark scoring (plain functions; flows/evaluate.py wraps them in Prefect).

`evaluate_model` runs every configured benchmark x prompt format through one harness
(primer.scoring.harness.evaluate) with one backend, and writes `evaluate/<key>/`:

    results.parquet   one row per sample: benchmark, split, prompt_format, task_id, sample_index, completion,
                      passed, status, error_kind, duration_s
    summary.json      pass@k per benchmark/format, prompt formats and stops, sampling settings, model
                      fingerprint, phi-1 paper reference numbers
    manifest.json     the summary's headline + file list (written last)

What is scored (`release`): a release directory or `release/<key>` store URI (backends primer / hf), a
checkpoint `train/<run>/step-NNNNNN` URI (primer backend), or nothing with `evaluate.backend=openai` (the
endpoint). The key hashes the model fingerprint (weights), the settings and the prompts, so a re-run reuses
the result; an endpoint's answers can change under the same name, so endpoint runs are never reused.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import asdict
from typing import Any, Callable

from primer.errors import InputError
from primer.export import PAPER_SCORES, release_backend
from primer.sandbox import Limits, Sandbox
from primer.scoring import models as M
from primer.scoring.backends import OpenAIBackend
from primer.scoring.harness import evaluate, load_problems, write_parquet
from primer.settings.evaluate import EvaluateConfig
from primer.evals.mbpp import configured as mbpp_configured
from primer.store import ArtifactStore, content_key

EVAL_VERSION = 1
_CHECKPOINT = re.compile(r"/step-\d{6,}/?(manifest\.json)?$")
# Settings that do not change results stay out of the key.
_NOT_IN_KEY = ("workers", "device", "endpoint", "mbpp_path", "humaneval_path")


MBPP_MISSING = ("mbpp skipped: no MBPP location configured (set evaluate.mbpp_path or $PRIMER_MBPP_PATH to "
                "mbpp.jsonl; it is not bundled)")


def plan(ev: EvaluateConfig) -> tuple[list[tuple[str, str, str]], list[str]]:
    """(benchmark, split, prompt_format) runs, in order, and notes on what was skipped. MBPP is scored on its
    test split here; without an MBPP location it is skipped with a note rather than failing the run."""
    runs, notes = [], []
    for b in ev.benchmarks:
        if b == "humaneval":
            runs.append(("humaneval", "test", "humaneval"))
        elif mbpp_configured(ev.mbpp_path):
            runs.extend(("mbpp", "test", f) for f in ev.mbpp_formats)
        else:
            notes.append(MBPP_MISSING)
    if not runs:
        raise InputError("evaluate: nothing to score. " + " ".join(notes))
    return runs, notes


def make_backend(store: ArtifactStore, ev: EvaluateConfig, release: str):
    if ev.backend == "openai":
        return OpenAIBackend.from_config(ev.endpoint, seed=ev.seed if ev.temperature > 0 else None)
    if not release:
        raise InputError("evaluate: nothing to score; pass a release (directory or release/<key> URI), a "
                         "checkpoint URI, or set evaluate.backend=openai with evaluate.endpoint")
    if _CHECKPOINT.search(release.rstrip("/")):
        if ev.backend != "primer":
            raise InputError(f"{release}: a training checkpoint is scored with evaluate.backend=primer; export "
                             "it first (`primer export`) to score it with transformers")
        return M.checkpoint_backend(store, release, device=ev.device, dtype=ev.dtype, batch_size=ev.batch_size,
                                    seed=ev.seed)
    return release_backend(release, store, backend=ev.backend, device=ev.device, dtype=ev.dtype,
                           batch_size=ev.batch_size, seed=ev.seed)


def evaluate_model(store: ArtifactStore, ev: EvaluateConfig, release: str = "", backend=None,
                   on_progress: Callable[[float], None] | None = None,
                   log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Score, write results + summary, return the manifest (`reused: True` when found in the store)."""
    runs, notes = plan(ev)
    for note in notes:
        if log:
            log(note)
    problem_sets = [load_problems(b, s, f, limit=ev.limit, mbpp_path=ev.mbpp_path, humaneval_path=ev.humaneval_path)
                    for b, s, f in runs]
    backend = backend if backend is not None else make_backend(store, ev, release)
    fingerprint = backend.fingerprint()
    if fingerprint.get("backend") == "openai" or not (fingerprint.get("weights_sha256")
                                                      or fingerprint.get("release_content_hash")):
        fingerprint = {**fingerprint, "run_id": uuid.uuid4().hex}  # nothing pins the model: never reuse
    settings = {k: v for k, v in asdict(ev).items() if k not in _NOT_IN_KEY}
    limits = Limits(timeout_s=ev.timeout_s, memory_mb=ev.memory_mb)
    key = content_key(EVAL_VERSION, fingerprint, settings, asdict(limits),
                      [[(p.task_id, p.prompt) for p in ps] for ps in problem_sets])
    out = store.output("evaluate", key)
    if out.is_complete():
        return {**out.read_manifest(), "reused": True}
    out.clean_partial()
    summaries, rows = [], []
    with Sandbox(ev.workers or None) as sandbox:
        for i, ((bench, split, fmt), problems) in enumerate(zip(runs, problem_sets)):
            def progress(f: float, i: int = i) -> None:
                if on_progress:
                    on_progress((i + f) / len(runs))
            result = evaluate(backend, bench, split, fmt, ev.n_samples, temperature=ev.temperature, top_p=ev.top_p,
                              max_new_tokens=ev.max_new_tokens, ks=ev.ks, problems=problems, sandbox=sandbox,
                              limits=limits, on_progress=progress)
            summaries.append(result.summary)
            rows.extend(result.rows())
            if log:
                log(f"{bench}/{split}/{fmt}: " + ", ".join(f"{k} {v:.3f}" for k, v in result.summary.items()
                                                          if k.startswith("pass@")))
    headline = {f"{s['benchmark']}/{s['prompt_format']}": {k: v for k, v in s.items() if k.startswith("pass@")}
                for s in summaries}
    summary = {"model": fingerprint, "release": release or None, "backend": ev.backend,
               "sampling": summaries[0]["sampling"] if summaries else {}, "limit": ev.limit, "runs": summaries,
               "headline": headline, "paper": PAPER_SCORES, "settings": settings, "notes": notes}
    if hasattr(backend, "stats"):
        summary["backend_stats"] = dict(backend.stats)
    with out.open_local("results.parquet") as local:
        write_parquet(rows, local)
    out.write_json("summary.json", summary)
    return {**out.commit({"kind": "evaluation", "version": EVAL_VERSION, "model": fingerprint,
                          "release": release or None, "headline": headline, "sampling": summary["sampling"],
                          "limit": ev.limit, "notes": notes}), "reused": False}


def read_summary(store: ArtifactStore, uri: str) -> dict[str, Any]:
    return json.loads(M.read_bytes(store, f"{uri.rstrip('/')}/summary.json"))
