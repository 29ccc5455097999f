"""The synthesize flow: synthetic textbooks and exercises from an OpenAI-compatible teacher.

Returns the output URI (a store folder closed by manifest.json); when no teacher is configured or
synth.enabled is false, that output is a small "skipped" manifest with the reason (`read_output(uri).skipped`),
so the pipeline goes on with what it has. See docs/synthesize.md.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from primer.config import load_config
from primer.prefect_setup import task_runner_for
from primer.secrets import install_log_redaction
from primer.store import open_store
from tasks.synth import prefect_tasks as T


@flow(name="synthesize", task_runner=task_runner_for("synthesize"))
def synthesize(profile: str = "tiny", overrides: dict[str, Any] | None = None, plan: bool = False) -> str:
    """`plan=True` (`primer synthesize --plan`, or synth.plan_only): return the plan text, send nothing."""
    install_log_redaction()
    cfg = load_config(profile, {**(overrides or {}), **({"synth.plan_only": True} if plan else {})})
    open_store(cfg.store)  # fails early, with a clear message, when the store is unreachable
    prep = T.prepare(cfg)
    if "skip" in prep:
        return T.write_skipped(cfg, prep["skip"])
    if cfg.synth.plan_only:   # `primer synthesize --plan`: the plan, nothing sent
        return T.plan_requests(cfg, prep["topics"], prep["pools"], prep["seed"])
    if "reuse" in prep:
        return prep["reuse"]
    topics = T.expand_topics(cfg, prep["topics"])
    textbooks = T.generate_textbooks(cfg, topics["topics"], prep["seed"])
    exercises = T.generate_exercises(cfg, prep["pools"], topics["topics"])
    exercises = {**exercises, "rows": T.verify_exercises(cfg, exercises["rows"])}
    variants = T.generate_variants(cfg, exercises["rows"], prep["pools"])
    inputs = {"topics_sha256": prep["topics_sha"], "exercise_topics_sha256": prep["pools_sha"]}
    manifest = T.write_output(cfg, prep["key"], inputs, textbooks, exercises, variants, topics)
    return manifest["uri"]   # publishing (usage, accounting, diversity, samples) is part of write_output


if __name__ == "__main__":
    import sys

    print(synthesize(sys.argv[1] if len(sys.argv) > 1 else "tiny"))
