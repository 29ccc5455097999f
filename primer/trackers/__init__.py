"""Experiment trackers beside Prefect: training metrics also go to TensorBoard, MLflow or Weights & Biases.

Off by default. `PRIMER_TRACKERS` in the worker's environment (comma-separated) turns them on; the packages
come with `pip install 'primer[trackers]'`:

    tensorboard   event files written next to the run's checkpoints on the store: <train/<key>>/tensorboard/
    mlflow        a run per training phase on $MLFLOW_TRACKING_URI (required: a server, e.g. http://mlflow:5000;
                  experiment $PRIMER_MLFLOW_EXPERIMENT, default "primer"): params, metrics, the loss-curve picture
    wandb         a run per phase in $WANDB_PROJECT (default "primer"); WANDB_MODE=offline keeps it on disk under
                  $WANDB_DIR (`wandb sync` later)

Each records the phase's settings as params, `train/loss`, `train/lr`, `train/tokens_per_s(_per_device)`,
`train/mfu` at every step, `val/loss` at every eval (MLflow spells them `train_loss`, ...), and the loss-curve
picture at the end.

A tracker that is asked for but not installed (or not configured) fails the phase at start with one line naming
the package or setting: a run that silently tracked nothing would look like a tracked one. A tracker that fails
mid-run logs a warning and is switched off (the training run itself is what matters).

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


class Tracker:
    """One tracker for one phase. A subclass names its package and how to install it (`needs`), and writes
    with `log(metrics, step)`, `log_image(png)` and `close(ok)`; event handling and the guard live here."""

    name = ""
    needs = ""  # the install hint in the error when the package is missing

    def __init__(self, store, run_uri: str, run_name: str, params: dict[str, Any]):
        raise NotImplementedError

    def _import(self, module: str):
        import importlib

        try:
            return importlib.import_module(module)
        except ImportError:
            raise TrackerError(f"PRIMER_TRACKERS={self.name} needs the {self.name} package: {self.needs}") from None

    def on_event(self, event: dict[str, Any]) -> None:
        metrics = _metrics(event)
        if metrics:
            self.log(metrics, int(event.get("step", 0)))
        if event.get("event") == "checkpoint":
            self.checkpoint()

    def finish(self, status: str, loss_png: bytes | None = None) -> None:
        if loss_png:
            self.log_image(loss_png)
        self.close(status == "done")

    def log(self, metrics: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def log_image(self, png: bytes) -> None:
        raise NotImplementedError

    def checkpoint(self) -> None:
        """A checkpoint was saved: make what was logged so far durable (default: nothing to do)."""

    def close(self, ok: bool) -> None:
        raise NotImplementedError


def _rgb(png: bytes):
    import io

    from PIL import Image

    return Image.open(io.BytesIO(png)).convert("RGB")


class TensorBoardTracker(Tracker):
    """Event files in a local folder, copied next to the checkpoints on the store at the end (and at each
    checkpoint, so a killed run keeps what it logged)."""

    name, needs = "tensorboard", "pip install tensorboard (or primer[trackers])"

    def __init__(self, store, run_uri: str, run_name: str, params: dict[str, Any]):
        self._import("tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.store, self.dest = store, store.resolve(run_uri).rstrip("/") + "/tensorboard"
        self.local = Path(tempfile.mkdtemp(prefix="primer-tb-"))
        self.writer = SummaryWriter(log_dir=str(self.local))
        self.writer.add_text("params", "\n".join(f"    {k}: {v}" for k, v in sorted(params.items())), 0)

    def log(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def log_image(self, png: bytes) -> None:
        import numpy as np

        self.writer.add_image("loss_curve", np.asarray(_rgb(png)), dataformats="HWC")

    def checkpoint(self) -> None:
        self.writer.flush()
        for path in self.local.rglob("*"):
            if path.is_file():
                self.store.put_file(path, f"{self.dest}/{path.relative_to(self.local).as_posix()}")

    def close(self, ok: bool) -> None:
        self.writer.close()
        self.checkpoint()
        shutil.rmtree(self.local, ignore_errors=True)


class MLflowTracker(Tracker):
    name, needs = "mlflow", "pip install mlflow-skinny (or primer[trackers])"

    def __init__(self, store, run_uri: str, run_name: str, params: dict[str, Any]):
        self.mlflow = self._import("mlflow")
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            raise TrackerError("PRIMER_TRACKERS=mlflow needs MLFLOW_TRACKING_URI in the worker's environment "
                               "(your MLflow server, e.g. http://mlflow:5000)")
        self.mlflow.set_experiment(os.environ.get("PRIMER_MLFLOW_EXPERIMENT", "primer"))
        self.run = self.mlflow.start_run(run_name=run_name)
        self.mlflow.log_params({k: str(v)[:250] for k, v in params.items()})
        self.mlflow.set_tag("primer.store_uri", store.ref(store.resolve(run_uri)))

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics({k.replace("/", "_"): v for k, v in metrics.items()}, step=step)

    def log_image(self, png: bytes) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "loss.png"
            path.write_bytes(png)
            self.mlflow.log_artifact(str(path))

    def close(self, ok: bool) -> None:
        self.mlflow.end_run(status="FINISHED" if ok else "FAILED")


class WandbTracker(Tracker):
    name, needs = "wandb", "pip install wandb (or primer[trackers]); WANDB_MODE=offline keeps runs on disk"

    def __init__(self, store, run_uri: str, run_name: str, params: dict[str, Any]):
        self.wandb = self._import("wandb")
        self.run = self.wandb.init(project=os.environ.get("WANDB_PROJECT", "primer"), name=run_name,
                                   config={**params, "store_uri": store.ref(store.resolve(run_uri))},
                                   reinit="finish_previous")

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def log_image(self, png: bytes) -> None:
        self.run.log({"loss_curve": self.wandb.Image(_rgb(png))})

    def close(self, ok: bool) -> None:
        self.run.finish(exit_code=0 if ok else 1)


FACTORIES: dict[str, type[Tracker]] = {t.name: t for t in (TensorBoardTracker, MLflowTracker, WandbTracker)}
KNOWN = tuple(FACTORIES)


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
