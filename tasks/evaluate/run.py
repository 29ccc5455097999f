"""Benchmark scoring in three steps, so the flow can map the sandbox batches on the stage's task runner:

    prepared = prepare(store, ev, release)          # plan, problems, key; generate every completion
    results  = [run_batch(b, ev.workers) for b in batches(prepared, ev.exec_batch)]   # mapped
    manifest = finish(store, ev, prepared, results)  # records, summaries, contamination, write, commit

`evaluate_model` chains them in-process; the outputs are the same whatever runs the batches. `evaluate/<key>/`:

    results.parquet     one row per sample: benchmark, split, prompt_format, task_id, sample_index, completion,
                        passed, status, error_kind
    summary.json        pass@k per benchmark/format (full and pruned), conventions, stops, sampling, model
                        fingerprint, phi-1 paper reference numbers
    contamination.json  per benchmark task, the nearest training documents by each method (when the release's
                        lineage reaches its training documents)
    manifest.json       the summary's headline + file list (written last); its `run` section holds the facts
                        of this run (timings, sample durations, backend request counts, per-task time limits
                        measured by the `reference` rule), which stay out of the files, so two runs on the
                        same model and problems give the same content hash

What is scored (`release`): a release directory or `release/<key>` store URI (backends primer / hf), a
checkpoint `train/<run>/step-NNNNNN` URI (primer backend), or nothing with `evaluate.backend=openai` (the
endpoint). The key hashes the model's weights (never its location), the settings and the prompts, so a
re-run reuses the result; an endpoint's answers can change under the same name, so those are never reused.
"""

from __future__ import annotations

import atexit
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

from primer.export import PAPER_SCORES
from primer.sandbox import ExecResult, Limits, Program, Sandbox
from primer.scoring.harness import (Generated, generate, limits_of, programs_of, reference_runtimes, score,
                                    write_parquet)
from primer.scoring.conventions import task_time_limit
from primer.settings.evaluate import EvaluateConfig
from primer.store import ArtifactStore, content_key
from tasks.evaluate import contamination as CT
from tasks.evaluate.model import LOCATION_FIELDS, make_backend, model_identity
from tasks.evaluate.plan import conventions, locate_mbpp, plan, problem_sets

EVAL_VERSION = 2   # 2: conventions (stops named, harness cuts, sanitizer, time limits), pruned scores
# Settings that do not change results stay out of the key.
# Backend counters that depend on how the run went (retried requests), not on what was scored: `run` only.
RUN_ONLY_STATS = ("requests", "retries")
_NOT_IN_KEY = ("workers", "device", "endpoint", "mbpp_path", "humaneval_path", "humaneval_plus_path",
               "mbpp_plus_path", "exec_batch")


@dataclass
class Prepared:
    key: str
    release: str
    reused: dict[str, Any] | None = None
    runs: list[tuple[str, str, str]] = field(default_factory=list)
    generated: list[Generated] = field(default_factory=list)
    programs: list[Program] = field(default_factory=list)
    limits: list[Limits] = field(default_factory=list)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    backend_stats: dict[str, Any] = field(default_factory=dict)
    generate_s: float = 0.0
    task_limits_s: dict[str, float] = field(default_factory=dict)


def prepare(store: ArtifactStore, ev: EvaluateConfig, release: str = "", backend=None,
            log: Callable[[str], None] | None = None) -> Prepared:
    """Plan, load the problems, compute the key; unless reused, generate every completion and build the
    programs (with per-sample limits)."""
    mbpp_path, mbpp_why = locate_mbpp(ev)
    runs, notes = plan(ev, mbpp_path, mbpp_why)
    for note in notes:
        if log:
            log(note)
    sets = problem_sets(ev, runs, mbpp_path)
    backend = backend if backend is not None else make_backend(store, ev, release)
    fingerprint = backend.fingerprint()
    settings = {k: v for k, v in asdict(ev).items() if k not in _NOT_IN_KEY}
    base = Limits(timeout_s=ev.timeout_s, memory_mb=ev.memory_mb)
    key = content_key(EVAL_VERSION, model_identity(fingerprint), settings, asdict(base),
                      [[(p.task_id, p.prompt) for p in ps] for ps in sets])
    out = store.output("evaluate", key)
    if out.is_complete():
        return Prepared(key, release, reused={**out.read_manifest(), "reused": True})
    per_task: dict[str, float] = {}
    if ev.time_limit == "reference":  # evalplus: max(floor, factor x reference runtime), measured here
        with Sandbox(ev.workers or None) as sb:
            for ps in sets:
                for tid, t in reference_runtimes(ps, base, sandbox=sb).items():
                    per_task[tid] = task_time_limit(t, ev.time_floor_s, ev.time_factor)
    t0 = time.perf_counter()
    generated, programs, limits = [], [], []
    done: dict[tuple, Generated] = {}
    for problems in sets:
        # the same prompts (an evalplus file's base and plus splits) are generated once
        same = (tuple(p.prompt for p in problems), problems[0].stop if problems else ())
        if same in done:
            gen = replace(done[same], problems=problems)
        else:
            gen = done[same] = generate(backend, problems, ev.n_samples, temperature=ev.temperature,
                                        top_p=ev.top_p, max_new_tokens=ev.max_new_tokens)
        generated.append(gen)
        programs += programs_of(gen, ev.sanitizer)
        limits += limits_of(gen, base, per_task)
    return Prepared(key, release, None, runs, generated, programs, limits, fingerprint, settings, notes,
                    dict(getattr(backend, "stats", {}) or {}), round(time.perf_counter() - t0, 3), per_task)


# ------------------------------------------------------------------------------------------- execution

def batches(prepared: Prepared, size: int) -> list[tuple[list[Program], list[Limits]]]:
    """The programs in fixed-size batches, in order (what the flow maps on its task runner)."""
    n = len(prepared.programs)
    return [(prepared.programs[i:i + size], prepared.limits[i:i + size]) for i in range(0, n, max(1, size))]


_pools: dict[int, Sandbox] = {}
_pools_lock = threading.Lock()


def shared_sandbox(workers: int) -> Sandbox:
    """One warm pool per process and size, shared by every batch the process runs (threads on one machine
    share it; each Dask/Ray worker process gets its own)."""
    with _pools_lock:
        sb = _pools.get(workers)
        if sb is None or sb._closed:
            sb = _pools[workers] = Sandbox(workers or None)
            atexit.register(sb.close)
        return sb


def run_batch(batch: tuple[list[Program], list[Limits]], workers: int = 0) -> list[ExecResult]:
    programs, limits = batch
    return shared_sandbox(workers).run_many(programs, limits)


# ------------------------------------------------------------------------------------------- results

def finish(store: ArtifactStore, ev: EvaluateConfig, prepared: Prepared, results: list[list[ExecResult]],
           execute_s: float = 0.0, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Score, add the contamination report and pruned scores, write results + summary, commit."""
    if prepared.reused is not None:
        return prepared.reused
    flat = [r for batch in results for r in batch]
    out = store.output("evaluate", prepared.key)
    out.clean_partial()
    summaries, rows, at, run_facts = [], [], 0, {}
    used = conventions(ev)
    for (bench, split, fmt), gen in zip(prepared.runs, prepared.generated):
        part = flat[at:at + len(gen.samples)]
        at += len(gen.samples)
        result = score(gen, part, bench, split, fmt, ks=ev.ks, execute_s=execute_s, conventions_used=used)
        summaries.append(result.summary)
        run_facts[run_name(result.summary)] = result.run_facts
        rows.extend(result.rows())
        if log:
            log(f"{bench}/{split}/{fmt}: " + ", ".join(f"{k} {v:.3f}" for k, v in result.summary.items()
                                                      if k.startswith("pass@")))
    report = CT.contamination_for(store, ev.contamination, prepared.release, prepared.runs, prepared.generated,
                                  log=log) if ev.contamination.report else None
    if report is not None:
        for s, gen in zip(summaries, prepared.generated):
            s["pruned"] = CT.pruned_summary(s, [r for r in rows if r["benchmark"] == s["benchmark"]
                                                and r["split"] == s["split"]
                                                and r["prompt_format"] == s["prompt_format"]],
                                            report["close_tasks"].get(s["benchmark"], []), greedy=gen.sampling["greedy"],
                                            ks=ev.ks)
    headline = {run_name(s): {**{k: v for k, v in s.items() if k.startswith("pass@")},
                                                           **({"pruned": {k: v for k, v in s["pruned"].items()
                                                                          if k.startswith("pass@")}}
                                                              if s.get("pruned") else {})}
                for s in summaries}
    # The files hold what follows from the model, problems and settings; where the model was read from and
    # what this run measured go in the manifest (the model's location and the `run` section).
    stats = prepared.backend_stats
    summary = {"model": {k: v for k, v in prepared.fingerprint.items() if k not in LOCATION_FIELDS},
               "backend": ev.backend,
               "sampling": summaries[0]["sampling"] if summaries else {}, "limit": ev.limit, "runs": summaries,
               "conventions": used, "headline": headline, "paper": PAPER_SCORES, "settings": prepared.settings,
               "notes": prepared.notes,
               "backend_stats": {k: v for k, v in stats.items() if k not in RUN_ONLY_STATS},
               "contamination": CT.report_header(report)}
    with out.open_local("results.parquet") as local:
        write_parquet(rows, local)
    if report is not None:
        out.write_json("contamination.json", report)
    out.write_json("summary.json", summary)
    return {**out.commit({"kind": "evaluation", "version": EVAL_VERSION, "model": prepared.fingerprint,
                          "release": prepared.release or None, "headline": headline,
                          "sampling": summary["sampling"], "conventions": used, "limit": ev.limit,
                          "notes": prepared.notes,
                          "run": {"timing_s": {"generate": prepared.generate_s, "execute": round(execute_s, 3)},
                                  "runs": run_facts, "backend_stats": stats,
                                  "task_time_limits_s": prepared.task_limits_s}}), "reused": False}


def run_name(s: dict[str, Any]) -> str:
    """`humaneval/humaneval`, `mbpp/austin3shot`; evalplus runs add their split: `humaneval+/humaneval/plus`."""
    return f"{s['benchmark']}/{s['prompt_format']}" + ("" if s["split"] == "test" else f"/{s['split']}")


def evaluate_model(store: ArtifactStore, ev: EvaluateConfig, release: str = "", backend=None,
                   on_progress: Callable[[float], None] | None = None,
                   log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """prepare -> every batch in this process -> finish. Returns the manifest (`reused: True` when found)."""
    prepared = prepare(store, ev, release, backend, log)
    if prepared.reused is not None:
        return prepared.reused
    if on_progress:
        on_progress(0.5)
    t0 = time.perf_counter()
    results = [run_batch(b, ev.workers) for b in batches(prepared, ev.exec_batch)]
    if on_progress:
        on_progress(1.0)
    return finish(store, ev, prepared, results, time.perf_counter() - t0, log)


def read_summary(store: ArtifactStore, uri: str) -> dict[str, Any]:
    return store.read_json(store.read_output(uri, "evaluate").file_uri("summary.json"))
