"""The finished run's manifest (every checkpoint with its metrics), its loss curve, and the best checkpoint.

Everything the manifest points to in the store is recorded as a store ref (`train/<run>/step-000020`,
`.../model.safetensors`, `pack/<key>`): readers turn them into URIs with `store.resolve`, so a store
copied to another root or to S3 still works.
"""

from __future__ import annotations

import io
import json
from typing import Any

from primer.errors import PrimerError
from primer.store import ArtifactStore
from primer.training.checkpoints import list_checkpoints
from primer.training.spec import TRAIN_VERSION, TrainSpec


def run_summary(store: ArtifactStore, spec: TrainSpec, events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write (or read) the run manifest: every checkpoint of the run with its metrics, committed last.

    `events` (the program's step/eval/checkpoint events of the attempt that finished the run) are kept
    beside it as events.jsonl for loss curves and audits."""
    out = store.output("train", spec.run_key)
    if out.is_complete():
        return out.read_manifest()
    checkpoints = []
    for c in list_checkpoints(store, spec.run_key):
        row = {k: c.get(k) for k in ("step", "train_loss", "val_loss", "tokens")}
        row["uri"] = store.ref(c["uri"])
        row["weights"] = store.ref(store.resolve(c["weights"])) if c.get("weights") else None
        checkpoints.append(row)
    if not checkpoints:
        raise PrimerError(f"train/{spec.run_key}: the run finished without any checkpoint in the store")
    out.write_json("spec.json", spec.public())
    with out.open_local("events.jsonl") as local:
        local.write_text("".join(json.dumps(e) + "\n" for e in events or []))
    steps = [e for e in events or [] if e.get("event") == "step"]
    throughput = {k: steps[-1].get(k) for k in ("tokens_per_s", "tokens_per_s_per_device", "mfu")} if steps else {}
    return out.commit({"kind": "training_run", "version": TRAIN_VERSION, "phase": spec.phase,
                       "run_key": spec.run_key, "model": spec.model, "world": spec.world,
                       "inputs": {"shards": spec.shards, "shards_hash": spec.shards_hash,
                                  "init_weights": spec.init_weights, "init_weights_hash": spec.init_weights_hash},
                       "throughput": throughput, "checkpoints": checkpoints})


def best_checkpoint(manifest: dict[str, Any]) -> dict[str, Any]:
    scored = [c for c in manifest["checkpoints"] if c.get("val_loss") is not None]
    if not scored:
        raise PrimerError(f"{manifest['uri']}: no checkpoint has a validation loss; pack with pack.val_fraction > 0")
    return min(scored, key=lambda c: (c["val_loss"], -c["step"]))


def finetune_start(manifest: dict[str, Any]) -> dict[str, Any]:
    """The pretraining checkpoint finetuning starts from; fails at once when it has no weights to load."""
    start = best_checkpoint(manifest)
    if not start.get("weights"):
        raise PrimerError(f"{manifest['uri']}: checkpoint step {start['step']} has no consolidated weights, so "
                          "the finetune phase has nothing to start from; set train.consolidate=true (and re-run "
                          "pretraining) or drop train.finetune_shards")
    return start


def loss_plot_png(events: list[dict[str, Any]], title: str) -> bytes:
    """Train/validation loss by step, with tokens/s per device and MFU (when known) on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [e for e in events if e["event"] == "step"]
    evals = [e for e in events if e["event"] == "eval" and e.get("val_loss") is not None]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(7, 5), dpi=100, sharex=True, height_ratios=(2, 1))
    ax.plot([e["step"] for e in steps], [e["loss"] for e in steps], label="train loss", lw=1)
    if evals:
        ax.plot([e["step"] for e in evals], [e["val_loss"] for e in evals], "o-", label="validation loss")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    ax2.plot([e["step"] for e in steps], [e.get("tokens_per_s_per_device", e.get("tokens_per_s", 0)) for e in steps],
             lw=1, color="tab:green")
    ax2.set_ylabel("tok/s per device")
    ax2.set_xlabel("step")
    mfus = [(e["step"], e["mfu"]) for e in steps if e.get("mfu") is not None]
    if mfus:
        twin = ax2.twinx()
        twin.plot(*zip(*mfus), lw=1, color="tab:red")
        twin.set_ylabel("MFU")
    ax2.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
