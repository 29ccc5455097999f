"""Experiment trackers (primer/trackers): off by default; TensorBoard event files land next to the run's
checkpoints on the store and read back with TensorBoard's own reader; MLflow against a real `mlflow server` on
loopback (read back with MLflow's client); W&B offline (its run file read back record by record). The three
need the `trackers` extra (CI installs it: scripts/setup.sh); without it they skip, saying so."""

from __future__ import annotations

import io
import json
import shutil
import struct
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
EXTRA = "optional extra: pip install 'primer[trackers]' (scripts/setup.sh installs it)"
LOSS = [(s, round(6.5 - 0.2 * s, 4)) for s in range(1, 7)]


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


@pytest.mark.parametrize("name", ["tensorboard", "mlflow", "wandb"])
def test_a_tracker_asked_for_but_not_installed_fails_at_start_naming_the_package(local_store, monkeypatch, name):
    monkeypatch.setitem(sys.modules, name, None)  # import fails as if the package were absent
    with pytest.raises(TrackerError, match=f"PRIMER_TRACKERS={name} needs the {name} package: pip install"):
        Trackers(local_store, local_store.uri("train", "k"), "run", PARAMS, environ={"PRIMER_TRACKERS": name})


def test_mlflow_without_a_tracking_uri_fails_at_start_naming_the_setting(local_store, monkeypatch):
    pytest.importorskip("mlflow", reason=EXTRA)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(TrackerError, match="PRIMER_TRACKERS=mlflow needs MLFLOW_TRACKING_URI"):
        Trackers(local_store, local_store.uri("train", "k"), "run", PARAMS, environ={"PRIMER_TRACKERS": "mlflow"})


def test_tensorboard_event_files_next_to_the_checkpoints_on_the_store(local_store, tmp_path):
    pytest.importorskip("tensorboard", reason=EXTRA)
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
    assert loss == LOSS
    assert [s.value for s in acc.Scalars("val/loss")] == [pytest.approx(6.4), pytest.approx(5.5)]
    assert acc.Tags()["images"] == ["loss_curve"]


def test_mlflow_against_a_real_server_on_loopback(local_store, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason=EXTRA)
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
        assert run.info.run_name == "pretrain-k2" and run.info.status == "FINISHED"
        assert run.data.params["max_steps"] == "6" and run.data.params["run_key"] == "abc123"
        assert run.data.tags["primer.store_uri"].endswith("train/k2")
        history = client.get_metric_history(run.info.run_id, "train_loss")
        assert [(m.step, round(m.value, 4)) for m in history] == LOSS
        val = client.get_metric_history(run.info.run_id, "val_loss")
        assert [(m.step, m.value) for m in val] == [(0, pytest.approx(6.4)), (6, pytest.approx(5.5))]
        assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["loss.png"]
        png = Path(client.download_artifacts(run.info.run_id, "loss.png", str(tmp_path / "dl")))
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        failed = Trackers(local_store, local_store.uri("train", "k4"), "pretrain-k4", PARAMS,
                          environ={"PRIMER_TRACKERS": "mlflow"})
        failed.on_event(EVENTS[2])
        failed.finish("failed")  # what the train task does when the launch raises
        run = client.search_runs([exp.experiment_id], "attributes.run_name = 'pretrain-k4'")[0]
        assert run.info.status == "FAILED"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _wandb_records(path: Path) -> list:
    """The protobuf records of an offline W&B run file: a 7-byte `:W&B` header, then LevelDB-log records
    (7-byte header: crc, length, type FULL/FIRST/MIDDLE/LAST) in 32 KiB blocks. Only whole records: the file
    may be read while wandb-core is still appending to it (the caller polls until the exit record is there)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a W&B run file"
    pos, part, records = 7, b"", []
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # block trailer: padding
            pos += 32768 - pos % 32768
            continue
        _, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 or pos + 7 + n > len(data):  # zero padding, or a record wandb-core is still writing
            break
        part, pos = part + data[pos + 7:pos + 7 + n], pos + 7 + n
        if kind in (1, 4):  # FULL or LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(part)
            records.append(record)
            part = b""
    return records


def test_wandb_offline(local_store, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason=EXTRA)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    t = Trackers(local_store, local_store.uri("train", "k3"), "pretrain-k3", PARAMS, environ={"PRIMER_TRACKERS": "wandb"})
    for e in EVENTS:
        t.on_event(e)
    t.finish("done", _png())
    assert t.active, "the W&B tracker switched itself off"
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb")), "no offline run written"
    run_file = next(runs[0].glob("*.wandb"))
    deadline = time.time() + 30  # wandb-core (its own process) may still be flushing the file after finish()
    records = _wandb_records(run_file)
    while not any(r.HasField("exit") for r in records) and time.time() < deadline:
        time.sleep(0.2)
        records = _wandb_records(run_file)
    by_kind = {}
    for r in records:
        by_kind.setdefault(r.WhichOneof("record_type"), []).append(r)
    assert {"run", "history", "exit"} <= set(by_kind), f"records in {run_file.name} ({run_file.stat().st_size} bytes): {sorted(by_kind)}"
    run = by_kind["run"][0].run
    assert run.display_name == "pretrain-k3" and run.project == "primer"
    config = {i.key: json.loads(i.value_json) for i in run.config.update}
    assert config["max_steps"] == 6 and config["store_uri"].endswith("train/k3")
    history = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
               for r in by_kind["history"]]
    assert [(h["_step"], round(h["train/loss"], 4)) for h in history if "train/loss" in h] == LOSS
    assert [(h["_step"], h["val/loss"]) for h in history if "val/loss" in h] == [(0, 6.4), (6, 5.5)]
    image = [h["loss_curve/path"] for h in history if "loss_curve/path" in h]
    assert len(image) == 1 and (runs[0] / "files" / image[0]).read_bytes()[:4] == b"\x89PNG"
    assert by_kind["exit"][0].exit.exit_code == 0
