"""The whole phi-1 recipe in one run: curate -> synthesize -> pack -> train -> select -> export -> evaluate.

    primer run --profile tiny
    prefect deployment run 'pipeline/tiny'

Each stage is a subflow that reads its inputs from the store and returns its output's URI; a stage whose
output for the same inputs exists is reused, so a killed run re-run finishes without redoing finished
stages. The synthesize stage is skipped with a note when no teacher is configured (pretraining then uses
curated code only and there is no finetuning phase). Every link is recorded in runs/<run_id>/manifest.json
(`primer lineage RUN_ID`).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from primer import dashboard
from primer.config import PrimerConfig, load_config
from primer.secrets import install_log_redaction
from primer.lineage import RunLineage, render_lineage, stage_entry
from primer.run_page import publish_run_page
from primer.store import ArtifactStore, open_store


def new_run_id() -> str:
    run = flow_run.get_id()
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + (str(run)[:8] if run else uuid.uuid4().hex[:8])


def pretraining_sources(curated: str, synth: str | None) -> list[dict[str, Any]]:
    """CodeTextbook: curated code + synthetic textbooks (phi-1), each a pack source read from its manifest."""
    sources = [{"uri": curated, "name": "curated_code", "dataset": "documents"}]
    if synth:
        sources.append({"uri": synth, "name": "synthetic_textbooks", "dataset": "textbooks"})
    return sources


def exercise_sources(synth: str) -> list[dict[str, Any]]:
    """CodeExercises: only exercises whose solution passed its tests in the sandbox (the dataset says so)."""
    return [{"uri": synth, "name": "code_exercises", "dataset": "exercises", "keep_if": "verified"}]


@flow(name="pipeline", log_prints=True)
def pipeline(profile: str = "tiny", overrides: dict[str, Any] | None = None, run_id: str = "") -> str:
    """Run every stage of the recipe. Returns the run id (its lineage is at runs/<run_id>/manifest.json).

    Args:
        profile: named profile (tiny, small, phi1).
        overrides: dotted settings applied to every stage, e.g. {"train.pretrain.max_steps": 200}.
        run_id: name of this run in the store (default: UTC time + flow run id).
    """
    from flows.curate import curate
    from flows.evaluate import evaluate
    from flows.export import export
    from flows.pack import pack
    from flows.select import select
    from flows.synthesize import synthesize
    from flows.train import train

    install_log_redaction()
    overrides = dict(overrides or {})
    cfg: PrimerConfig = load_config(profile, overrides)  # fail fast on a bad value
    logger = get_run_logger()
    store = open_store(cfg.store)
    run_id = run_id or new_run_id()
    lineage = RunLineage(store, run_id, profile, overrides)
    logger.info("pipeline run %s -> %s", run_id, lineage.uri)

    curated = curate(profile, overrides)
    lineage.record_external(store.read_output(curated, "curate").manifest.get("sources", []))
    lineage.record("curate", stage_entry(store, curated, [e["uri"] for e in lineage.doc["external_inputs"]]))

    synth_output = store.read_output(synthesize(profile, overrides), "synthesize")
    synth = None if synth_output.skipped else synth_output.uri
    lineage.record("synthesize", stage_entry(store, synth_output.uri))
    if not synth:
        lineage.note("no teacher: pretraining on curated code only, no finetuning phase")
        logger.warning("synthesize skipped: %s; going on with curated code only", synth_output.reason)

    shards = pack(profile, {**overrides, "pack.sources": pretraining_sources(curated, synth)})
    lineage.record("pack", stage_entry(store, shards, [curated] + ([synth] if synth else [])))
    tokenizer_uri = store.resolve(store.read_output(shards, "pack").manifest["tokenizer"]["uri"])

    finetune_shards = ""
    if synth:
        finetune_shards = pack(profile, {**overrides, "pack.sources": exercise_sources(synth),
                                         "tokenizer.uri": tokenizer_uri})
        lineage.record("pack_exercises", stage_entry(store, finetune_shards, [synth, shards]))

    last_run = train(profile, {**overrides, "train.shards": shards, "train.finetune_shards": finetune_shards})
    pre_run = pretraining_run(store, last_run)
    if pre_run != last_run:
        lineage.record("pretrain", stage_entry(store, pre_run, [shards]))
        lineage.record("finetune", stage_entry(store, last_run, [finetune_shards, pre_run]))
    else:
        lineage.record("pretrain", stage_entry(store, last_run, [shards]))

    selection = select(profile, overrides, run=last_run)
    lineage.record("select", stage_entry(store, selection, [last_run]))
    release = export(profile, overrides, selection=selection)
    lineage.record("release", stage_entry(store, release, [selection]))
    scores = evaluate(profile, overrides, release=release)
    lineage.record("evaluate", stage_entry(store, scores, [release]))

    lineage.finish()
    dashboard.markdown("pipeline-lineage", f"## Pipeline run `{run_id}`\n\n```\n{render_lineage(lineage.doc)}\n```\n",
                       "Every stage output of this run and what it was made from")
    publish_run_page(store, lineage.doc)  # the run's own page: funnel, teacher, loss, checkpoints, scores, lineage
    logger.info("pipeline run %s complete", run_id)
    return run_id


def pretraining_run(store: ArtifactStore, run: str) -> str:
    """The pretraining run behind a training run: itself for a pretraining run; for a finetuning run, the
    run of the checkpoint it started from, as its manifest names it (never by cutting URIs)."""
    manifest = store.read_output(run, "train").manifest
    if manifest.get("phase") != "finetune":
        return store.resolve(run)
    inputs = manifest.get("inputs", {})
    if inputs.get("pretrain_run"):
        return store.resolve(inputs["pretrain_run"])
    start = store.read_output(store.resolve(inputs["init_weights"]).rsplit("/", 1)[0]).manifest
    return store.uri("train", start["run"])
