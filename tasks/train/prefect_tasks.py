"""The train stage's Prefect tasks (the one place they are declared). Reuse is by the run key in the
store (a finished run is reused, an unfinished one resumes), so no task result cache."""

from __future__ import annotations

import base64
from typing import Any

from prefect import get_run_logger, task

from primer import dashboard
from primer.config import PrimerConfig
from primer.store import ArtifactStore, open_store
from primer.trackers import open_trackers
from tasks.train.launch import launch
from tasks.train.spec import build_spec
from tasks.train.summary import loss_plot_png, run_summary


@task(name="train-phase")
def train_phase(cfg: PrimerConfig, phase: str, shards: str, init_weights: str | None = None) -> dict[str, Any]:
    """Run (or resume, or reuse) one phase on this node; return the run manifest."""
    logger = get_run_logger()
    store = open_store(cfg.store)
    spec = build_spec(cfg, store, phase, shards, init_weights)
    done = store.output("train", spec.run_key)
    if done.is_complete():
        logger.info("%s run %s already finished: reusing it", phase, done.uri)
        return {**done.read_manifest(), "reused": True}
    max_steps = spec.phase_config.max_steps
    progress = dashboard.Progress(f"train-{phase}-progress", f"{phase}: optimizer steps")
    events: list[dict[str, Any]] = []
    trackers = open_trackers(store, done.uri, f"{phase}-{spec.run_key[:8]}", spec)  # PRIMER_TRACKERS; off by default

    def on_event(event: dict[str, Any]) -> None:
        events.append(event)
        trackers.on_event(event)
        kind = event["event"]
        if kind == "step":
            progress.update(event["step"] / max_steps)
            if event["step"] % 10 == 0 or event["step"] == max_steps:
                mfu = f" MFU {event['mfu']:.1%}" if event.get("mfu") is not None else ""
                logger.info("%s step %d/%d loss %.4f lr %.2e %.0f tok/s/device%s", phase, event["step"], max_steps,
                            event["loss"], event["lr"], event["tokens_per_s_per_device"], mfu)
        elif kind in ("eval", "checkpoint", "resume", "start"):
            logger.info("%s %s", phase, {k: v for k, v in event.items() if k != "event"})

    t = cfg.train
    try:
        launch(spec, t.nproc, t.launcher, t.hostfile, on_event, nnodes=t.nnodes, node_rank=t.node_rank,
               master_addr=t.master_addr, master_port=t.master_port)
    except BaseException:
        trackers.finish("failed")  # the tracker's run ends FAILED, not left RUNNING
        raise
    progress.done()
    trackers.finish("done", loss_plot_png(events, f"{phase} ({spec.run_key[:8]})") if trackers.active else None)
    if t.node_rank != 0:  # the master node's launcher writes the run manifest: wait for it
        return {**wait_for_manifest(store, spec.run_key), "reused": False}
    return {**run_summary(store, spec, events), "reused": False}


def wait_for_manifest(store: ArtifactStore, run_key: str, timeout_s: float = 300.0) -> dict[str, Any]:
    import time

    out = store.output("train", run_key)
    deadline = time.monotonic() + timeout_s
    while not out.is_complete():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{out.uri}: the master node (train.node_rank=0) wrote no run manifest within "
                               f"{timeout_s:.0f} s of this node's ranks finishing")
        time.sleep(1.0)
    return out.read_manifest()


@task(name="publish-train")
def publish(store_cfg: Any, manifest: dict[str, Any], phase: str) -> None:
    """Checkpoint table, loss curve (with tok/s and MFU) and a summary with the throughput."""
    store: ArtifactStore = open_store(store_cfg)
    rows = [{"step": c["step"], "val_loss": c["val_loss"], "train_loss": c["train_loss"], "tokens": c["tokens"],
             "checkpoint": c["uri"]} for c in manifest["checkpoints"]]
    dashboard.table(f"train-{phase}-checkpoints", rows, f"{phase} checkpoints and their validation loss")
    import json

    run = store.resolve(f"train/{manifest['run_key']}")
    raw = store.read_bytes(f"{run}/events.jsonl").decode()
    events = [json.loads(line) for line in raw.splitlines() if line.strip()]
    png = loss_plot_png(events, f"{phase} ({manifest['run_key'][:8]})")
    store.write_bytes(f"{run}/loss.png", png)
    image = base64.b64encode(png).decode()
    tp = manifest.get("throughput") or {}
    speed = (f"{tp.get('tokens_per_s_per_device') or 0:.0f} tok/s per device x {manifest.get('world')} ranks, MFU "
             + (f"{tp['mfu']:.1%}" if tp.get("mfu") is not None else "n/a (no known peak: CPU, or set train.peak_tflops)"))
    dashboard.markdown(
        f"train-{phase}-summary",
        f"## {phase}\n\nRun `{manifest.get('ref') or manifest['uri']}` — {speed}\n\n"
        f"![loss curve](data:image/png;base64,{image})\n\n" + dashboard.markdown_table(rows),
        f"{phase} loss curve and checkpoints")
