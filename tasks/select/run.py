"""Checkpoint selection (plain functions; flows/select.py wraps them in Prefect).

`select_run` scores every checkpoint of a training run on its validation loss (from the checkpoint
manifest) and greedy MBPP-validation pass@1 (task ids 511-600 only; see primer/scoring/selection.py), picks
one by `select.rule` and writes `select/<key>/`:

    select/<key>/results.parquet   every checkpoint's per-sample results (+ a `step` column)
    select/<key>/manifest.json     candidates, chosen, reason, rule, prompt format, run  (written last)

The key hashes the run's manifest, the select settings, the validation prompts and the sandbox limits:
the same inputs reuse the selection.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable

from primer.errors import InputError
from primer.sandbox import Limits, Sandbox
from primer.scoring import checkpoints as C
from primer.scoring.data_files import try_locate_mbpp
from primer.scoring.harness import write_parquet
from primer.scoring.selection import (RULES, SELECTION_BENCHMARK, SELECTION_SPLIT, choose, score_candidates,
                                      selection_problems)
from primer.settings.evaluate import EvaluateConfig, SelectConfig
from primer.store import ArtifactStore, content_key

SELECT_VERSION = 1


def select_run(store: ArtifactStore, sel: SelectConfig, ev: EvaluateConfig, run_uri: str,
               make_backend: Callable[[dict[str, Any]], Any] | None = None,
               on_progress: Callable[[float], None] | None = None) -> dict[str, Any]:
    """Score and choose; returns the selection manifest (reused when already in the store)."""
    out_run = store.read_output(run_uri)
    run = {**out_run.manifest, "uri": out_run.uri}
    checkpoints = [C.checkpoint_record(store, c) for c in run.get("checkpoints", []) if c.get("weights")]
    if not checkpoints:
        raise InputError(f"{run['uri']}: no checkpoint with consolidated weights (train.consolidate=true)")
    rule, note = sel.rule, None
    mbpp_path, why = try_locate_mbpp(ev.mbpp_path)
    if mbpp_path:
        problems = selection_problems(sel.prompt_format, sel.limit, mbpp_path=mbpp_path)
    else:  # no MBPP: choose on validation loss alone, and say so
        problems, rule = [], "loss"
        note = f"chose on validation loss alone: {why}"
    limits = Limits(timeout_s=ev.timeout_s, memory_mb=ev.memory_mb)
    key = content_key(SELECT_VERSION, run.get("content_hash"), asdict(sel),
                      [(p.task_id, p.prompt) for p in problems], asdict(limits))
    out = store.output("select", key)
    if out.is_complete():
        return {**out.read_manifest(), "reused": True}
    out.clean_partial()
    if make_backend is None:
        def make_backend(ckpt: dict[str, Any]):
            return C.checkpoint_backend(store, ckpt["uri"], device=ev.device, dtype=ev.dtype,
                                        batch_size=ev.batch_size, seed=ev.seed, run=run)
    if problems:
        with Sandbox(ev.workers or None) as sandbox:
            candidates, runs = score_candidates(checkpoints, make_backend, problems, prompt_format=sel.prompt_format,
                                                max_new_tokens=sel.max_new_tokens, sandbox=sandbox, limits=limits,
                                                on_progress=on_progress)
    else:
        candidates = [{"step": c["step"], "uri": c["uri"], "weights": c.get("weights"), "val_loss": c.get("val_loss"),
                       "train_loss": c.get("train_loss"), "tokens": c.get("tokens"), "pass@1": None,
                       "n_tasks": 0, "n_passed": 0, "errors": {}} for c in checkpoints]
        runs = []
    # refs in the manifest: a copied store still finds the checkpoints
    candidates = [{**c, "uri": store.ref(c["uri"]), "weights": store.ref(c["weights"]) if c.get("weights") else None}
                  for c in candidates]
    chosen, reason = choose(candidates, rule)
    if note:
        reason = f"{reason} ({note})"
    rows = [{**r, "step": c["step"]} for c, er in zip(candidates, runs) for r in er.rows()]
    with out.open_local("results.parquet") as local:
        write_parquet(rows, local, extra=("step",))
    return {**out.commit({"kind": "selection", "version": SELECT_VERSION, "run": store.ref(run["uri"]),
                          "run_key": run.get("run_key"), "benchmark": SELECTION_BENCHMARK, "split": SELECTION_SPLIT,
                          "task_ids": [p.task_id for p in problems], "prompt_format": sel.prompt_format,
                          "max_new_tokens": sel.max_new_tokens, "rule": rule, "rule_text": RULES[rule],
                          "candidates": candidates, "chosen": chosen, "reason": reason}), "reused": False}


def read_selection(store: ArtifactStore, uri: str) -> dict[str, Any]:
    """A selection manifest with `uri` here and its chosen checkpoint resolved to a URI in this store."""
    out = store.read_output(uri)
    if out.manifest.get("kind") != "selection":
        raise InputError(f"{uri}: not a checkpoint selection (kind={out.manifest.get('kind')!r})")
    chosen = {**out.manifest["chosen"], "uri": store.resolve(out.manifest["chosen"]["uri"])}
    return {**out.manifest, "uri": out.uri, "chosen": chosen}
