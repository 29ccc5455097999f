"""Experiment trackers beside Prefect: training metrics also go to TensorBoard, MLflow or Weights & Biases.

Off by default. `PRIMER_TRACKERS` in the worker's environment (comma-separated) turns them on:

    tensorboard   event files written next to the run's checkpoints on the store: <train/<key>>/tensorboard/
                  (needs the `tensorboard` package: pip install 'primer[trackers]')
    mlflow        a run per training phase on $MLFLOW_TRACKING_URI (params, metrics, the loss-curve picture);
                  needs `mlflow`
    wandb         a run per phase; WANDB_MODE=offline keeps it on disk (wandb sync later); needs `wandb`

A tracker that is asked for but not installed fails the phase at start with one line naming the package: a
run that silently tracked nothing would look like a tracked one. A tracker that fails mid-run logs a warning
and is switched off (the training run itself is what matters).

The training flow holds one `Trackers` per phase: `on_event` for every program event (step / eval /
checkpoint), `finish(status, loss_png)` at the end.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger("primer")

KNOWN = ("tensorboard", "mlflow", "wandb")


class TrackerError(RuntimeError):
    pass


def requested(environ: dict[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    names = [n.strip().lower() for n in env.get("PRIMER_TRACKERS", "").split(",") if n.strip()]
    unknown = [n for n in names if n not in KNOWN]
    if unknown:
        raise TrackerError(f"PRIMER_TRACKERS: unknown tracker(s) {', '.join(unknown)}; choose from {', '.join(KNOWN)}")
    return names


def _metrics(event: dict[str, Any]) -> dict[str, float]:
    kind = event.get("event")
    if kind == "step":
        return {f"train/{k}": float(event[k]) for k in ("loss", "lr", "tokens_per_s", "tokens_per_s_per_device", "mfu")
                if isinstance(event.get(k), (int, float))}
    if kind == "eval" and event.get("val_loss") is not None:
        return {"val/loss": float(event["val_loss"])}
    return {}


class TensorBoardTracker:
    """Event files in a local folder, copied next to the checkpoints on the store at the end (and at each
    checkpoint, so a killed run keeps what it logged)."""

    def __init__(self, store, run_uri: str, name: str, params: dict[str, Any]):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise TrackerError("PRIMER_TRACKERS=tensorboard needs the tensorboard package: "
                               "pip install tensorboard (or primer[trackers])") from None
        self.store, self.dest = store, store.resolve(run_uri).rstrip("/") + "/tensorboard"
        self.local = Path(tempfile.mkdtemp(prefix="primer-tb-"))
        self.writer = SummaryWriter(log_dir=str(self.local))
        self.writer.add_text("params", "\n".join(f"    {k}: {v}" for k, v in sorted(params.items())), 0)

    def on_event(self, event: dict[str, Any]) -> None:
        for key, value in _metrics(event).items():
            self.writer.add_scalar(key, value, int(event.get("step", 0)))
        if event.get("event") == "checkpoint":
            self._upload()

    def _upload(self) -> None:
        self.writer.flush()
        for path in self.local.rglob("*"):
            if path.is_file():
                self.store.put_file(path, f"{self.dest}/{path.relative_to(self.local).as_posix()}")

    def finish(self, status: str, loss_png: bytes | None = None) -> None:
        if loss_png:
            import io

            import numpy as np
            from PIL import Image

            image = np.asarray(Image.open(io.BytesIO(loss_png)).convert("RGB"))
            self.writer.add_image("loss_curve", image, dataformats="HWC")
        self.writer.close()
        self._upload()
        shutil.rmtree(self.local, ignore_errors=True)


class MLflowTracker:
    def __init__(self, store, run_uri: str, name: str, params: dict[str, Any]):
        try:
            import mlflow
        except ImportError:
            raise TrackerError("PRIMER_TRACKERS=mlflow needs the mlflow package: pip install mlflow "
                               "(and MLFLOW_TRACKING_URI pointing at your server)") from None
        self.mlflow = mlflow
        mlflow.set_experiment(os.environ.get("PRIMER_MLFLOW_EXPERIMENT", "primer"))
        self.run = mlflow.start_run(run_name=name)
        mlflow.log_params({k: str(v)[:250] for k, v in params.items()})
        mlflow.set_tag("primer.store_uri", store.ref(store.resolve(run_uri)))

    def on_event(self, event: dict[str, Any]) -> None:
        metrics = {k.replace("/", "_"): v for k, v in _metrics(event).items()}
        if metrics:
            self.mlflow.log_metrics(metrics, step=int(event.get("step", 0)))

    def finish(self, status: str, loss_png: bytes | None = None) -> None:
        if loss_png:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "loss.png"
                path.write_bytes(loss_png)
                self.mlflow.log_artifact(str(path))
        self.mlflow.end_run(status="FINISHED" if status == "done" else "FAILED")


class WandbTracker:
    def __init__(self, store, run_uri: str, name: str, params: dict[str, Any]):
        try:
            import wandb
        except ImportError:
            raise TrackerError("PRIMER_TRACKERS=wandb needs the wandb package: pip install wandb "
                               "(WANDB_MODE=offline to keep runs on disk)") from None
        self.wandb = wandb
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "primer"), name=name, config=params,
                              reinit=True)

    def on_event(self, event: dict[str, Any]) -> None:
        metrics = _metrics(event)
        if metrics:
            self.run.log(metrics, step=int(event.get("step", 0)))

    def finish(self, status: str, loss_png: bytes | None = None) -> None:
        if loss_png:
            import io

            from PIL import Image

            self.run.log({"loss_curve": self.wandb.Image(Image.open(io.BytesIO(loss_png)))})
        self.run.finish(exit_code=0 if status == "done" else 1)


FACTORIES = {"tensorboard": TensorBoardTracker, "mlflow": MLflowTracker, "wandb": WandbTracker}


class Trackers:
    """The trackers PRIMER_TRACKERS asks for, for one training phase (none: every call is a no-op)."""

    def __init__(self, store, run_uri: str, name: str, params: dict[str, Any],
                 environ: dict[str, str] | None = None):
        self.active = [FACTORIES[n](store, run_uri, name, params) for n in requested(environ)]

    def _each(self, method: str, *args: Any) -> None:
        for tracker in list(self.active):
            try:
                getattr(tracker, method)(*args)
            except Exception as e:  # tracking must never cost a training run
                log.warning("tracker %s failed (%s); switching it off for this run", type(tracker).__name__, e)
                self.active.remove(tracker)

    def on_event(self, event: dict[str, Any]) -> None:
        self._each("on_event", event)

    def finish(self, status: str = "done", loss_png: bytes | None = None) -> None:
        self._each("finish", status, loss_png)


def open_trackers(store, run_uri: str, name: str, spec: Any) -> Trackers:
    """Trackers for a training phase: params are the phase's settings (scalars only), never secrets/paths.
    `spec` is the training spec (a dataclass such as TrainSpec, or a dict)."""
    import dataclasses

    if dataclasses.is_dataclass(spec):
        spec = dataclasses.asdict(spec)
    phase = spec.get("phase_config") or {}
    params = {k: v for k, v in {**phase, "phase": spec.get("phase"), "zero_stage": spec.get("zero_stage"),
                                "dtype": spec.get("dtype"), "run_key": spec.get("run_key")}.items()
              if isinstance(v, (int, float, str, bool))}
    return Trackers(store, run_uri, name, params)
