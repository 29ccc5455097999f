"""Train flow: DeepSpeed ZeRO pretraining on token shards, then (optionally) finetuning on exercise shards.

    primer train --profile tiny --set train.zero_stage=3
    prefect deployment run 'train/tiny'

Each phase is a run keyed by its spec (model, data, hyperparameters, init weights): re-running resumes from
the latest checkpoint in the store, or reuses a finished run. Finetuning starts from the pretraining
checkpoint with the lowest validation loss, with a fresh optimizer and its own schedule (phi-1).
"""

from __future__ import annotations

import base64
import io
from typing import Any

from prefect import flow, get_run_logger, task

from primer import dashboard
from primer.config import PrimerConfig, load_config
from primer.errors import PrimerError
from primer.secrets import install_log_redaction
from primer.store import ArtifactStore, open_store
from primer.trackers import open_trackers
from tasks.train import build_spec, launch, run_summary


def loss_plot_png(events: list[dict[str, Any]], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [e for e in events if e["event"] == "step"]
    evals = [e for e in events if e["event"] == "eval" and e.get("val_loss") is not None]
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    ax.plot([e["step"] for e in steps], [e["loss"] for e in steps], label="train loss", lw=1)
    if evals:
        ax.plot([e["step"] for e in evals], [e["val_loss"] for e in evals], "o-", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


@task
def train_phase(cfg: PrimerConfig, phase: str, shards: str, init_weights: str | None = None) -> dict[str, Any]:
    """Run (or resume, or reuse) one phase; publish progress, the loss curve and the checkpoint table."""
    logger = get_run_logger()
    store = open_store(cfg.store)
    spec = build_spec(cfg, store, phase, shards, init_weights)
    done = store.output("train", spec["run_key"])
    if done.is_complete():
        logger.info("%s run %s already finished: reusing it", phase, done.uri)
        return {**done.read_manifest(), "reused": True}
    max_steps = spec["phase_config"]["max_steps"]
    progress = dashboard.Progress(f"train-{phase}-progress", f"{phase}: optimizer steps")
    events: list[dict[str, Any]] = []
    trackers = open_trackers(store, done.uri, f"{phase}-{spec['run_key'][:8]}", spec)  # PRIMER_TRACKERS; off by default

    def on_event(event: dict[str, Any]) -> None:
        events.append(event)
        trackers.on_event(event)
        kind = event["event"]
        if kind == "step":
            progress.update(event["step"] / max_steps)
            if event["step"] % 10 == 0 or event["step"] == max_steps:
                logger.info("%s step %d/%d loss %.4f lr %.2e %.0f tok/s", phase, event["step"], max_steps,
                            event["loss"], event["lr"], event["tokens_per_s"])
        elif kind in ("eval", "checkpoint", "resume", "start"):
            logger.info("%s %s", phase, {k: v for k, v in event.items() if k != "event"})

    launch(spec, cfg.train.nproc, cfg.train.launcher, cfg.train.hostfile, on_event)
    progress.done()
    manifest = run_summary(store, spec, events)
    publish(store, manifest, events, phase)
    trackers.finish("done", store.read_bytes(store.uri("train", manifest["run_key"], "loss.png")))
    return {**manifest, "reused": False}


def publish(store: ArtifactStore, manifest: dict[str, Any], events: list[dict[str, Any]], phase: str) -> None:
    rows = [{"step": c["step"], "val_loss": c["val_loss"], "train_loss": c["train_loss"], "tokens": c["tokens"],
             "checkpoint": c["uri"]} for c in manifest["checkpoints"]]
    dashboard.table(f"train-{phase}-checkpoints", rows, f"{phase} checkpoints and their validation loss")
    png = loss_plot_png(events, f"{phase} ({manifest['run_key'][:8]})")
    store.write_bytes(store.uri("train", manifest["run_key"], "loss.png"), png)
    image = base64.b64encode(png).decode()
    dashboard.markdown(
        f"train-{phase}-summary",
        f"## {phase}\n\nRun `{manifest['uri']}`\n\n![loss curve](data:image/png;base64,{image})\n\n"
        + dashboard.markdown_table(rows),
        f"{phase} loss curve and checkpoints")


def best_checkpoint(manifest: dict[str, Any]) -> dict[str, Any]:
    scored = [c for c in manifest["checkpoints"] if c.get("val_loss") is not None]
    if not scored:
        raise PrimerError(f"{manifest['uri']}: no checkpoint has a validation loss; pack with pack.val_fraction > 0")
    return min(scored, key=lambda c: (c["val_loss"], -c["step"]))


@flow(name="train", log_prints=True)
def train(profile: str = "tiny", overrides: dict[str, Any] | None = None) -> str:
    """Pretrain (and finetune, when train.finetune_shards is set). Returns the last phase's run URI.

    Args:
        profile: named profile (tiny, small, phi1).
        overrides: dotted settings, e.g. {"train.zero_stage": 3, "train.pretrain.max_steps": 200}.
    """
    install_log_redaction()
    cfg: PrimerConfig = load_config(profile, overrides)
    shards = cfg.train.shards
    if not shards:
        from flows.pack import pack

        shards = pack(profile, overrides)
    pre = train_phase(cfg, "pretrain", shards)
    if not cfg.train.finetune_shards:
        return pre["uri"]
    start = best_checkpoint(pre)
    get_run_logger().info("finetuning from pretraining step %d (val loss %.4f)", start["step"], start["val_loss"])
    ft = train_phase(cfg, "finetune", cfg.train.finetune_shards, start["weights"])
    return ft["uri"]
