"""Experiment trackers (primer/trackers): off by default; TensorBoard event files land next to the run's
checkpoints on the store and read back with TensorBoard's own reader; MLflow against a real `mlflow server` on
loopback and W&B offline when those optional packages are installed."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from primer.trackers import Trackers, TrackerError, requested
from tests.conftest import free_port

EVENTS = [{"event": "start", "step": 0}, {"event": "eval", "step": 0, "val_loss": 6.4},
          *({"event": "step", "step": s, "loss": 6.5 - 0.2 * s, "lr": 1e-3, "tokens_per_s": 5000.0} for s in range(1, 7)),
          {"event": "eval", "step": 6, "val_loss": 5.5}, {"event": "checkpoint", "step": 6, "uri": "x"},
          {"event": "done", "step": 6}]
PARAMS = {"phase": "pretrain", "max_steps": 6, "lr": 1e-3, "run_key": "abc123"}


def _png() -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([1, 2, 3], [3, 2, 1])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def test_off_by_default_and_bad_names_fail_with_the_choices(local_store):
    assert requested({}) == []
    t = Trackers(local_store, local_store.uri("train", "k"), "run", PARAMS, environ={})
    t.on_event(EVENTS[2])
    t.finish("done", None)
    assert not local_store.exists(local_store.uri("train", "k", "tensorboard"))
    with pytest.raises(TrackerError, match="unknown tracker.*tensorbord.*choose from tensorboard, mlflow, wandb"):
        requested({"PRIMER_TRACKERS": "tensorbord"})


def test_tensorboard_event_files_next_to_the_checkpoints_on_the_store(local_store, tmp_path):
    pytest.importorskip("tensorboard", reason="optional extra: pip install tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_uri = local_store.uri("train", "k1")
    t = Trackers(local_store, run_uri, "pretrain-k1", PARAMS, environ={"PRIMER_TRACKERS": "tensorboard"})
    for e in EVENTS:
        t.on_event(e)
    t.finish("done", _png())
    on_store = Path(local_store.to_path(run_uri)) / "tensorboard"
    files = list(on_store.glob("events.out.tfevents.*"))
    assert files, f"no event files under {on_store}"
    acc = EventAccumulator(str(on_store), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    loss = [(s.step, round(s.value, 4)) for s in acc.Scalars("train/loss")]
    assert loss == [(s, round(6.5 - 0.2 * s, 4)) for s in range(1, 7)]
    assert [s.value for s in acc.Scalars("val/loss")] == [pytest.approx(6.4), pytest.approx(5.5)]
    assert acc.Tags()["images"] == ["loss_curve"]


def test_mlflow_against_a_real_server_on_loopback(local_store, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason="optional extra: pip install mlflow")
    port = free_port()
    exe = shutil.which("mlflow") or str(Path(sys.executable).parent / "mlflow")
    proc = subprocess.Popen([exe, "server", "--host", "127.0.0.1", "--port", str(port), "--backend-store-uri",
                             f"sqlite:///{tmp_path}/mlflow.db", "--default-artifact-root", str(tmp_path / "mlruns"),
                             "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        uri = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        import urllib.request

        while True:
            try:
                urllib.request.urlopen(uri + "/health", timeout=2)
                break
            except Exception:
                if time.time() > deadline or proc.poll() is not None:
                    pytest.fail("mlflow server did not start")
                time.sleep(1)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        t = Trackers(local_store, local_store.uri("train", "k2"), "pretrain-k2", PARAMS,
                     environ={"PRIMER_TRACKERS": "mlflow"})
        for e in EVENTS:
            t.on_event(e)
        t.finish("done", _png())
        client = mlflow.tracking.MlflowClient(uri)
        exp = client.get_experiment_by_name("primer")
        run = client.search_runs([exp.experiment_id])[0]
        assert run.data.params["max_steps"] == "6" and run.info.status == "FINISHED"
        history = client.get_metric_history(run.info.run_id, "train_loss")
        assert [(m.step, round(m.value, 4)) for m in history] == [(s, round(6.5 - 0.2 * s, 4)) for s in range(1, 7)]
        assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["loss.png"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_wandb_offline(local_store, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="optional extra: pip install wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    t = Trackers(local_store, local_store.uri("train", "k3"), "pretrain-k3", PARAMS, environ={"PRIMER_TRACKERS": "wandb"})
    for e in EVENTS:
        t.on_event(e)
    t.finish("done", _png())
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert runs and list(runs[0].glob("*.wandb")), "no offline run written"
