"""Training checkpoints on the artifact store.

DeepSpeed writes checkpoints to local paths only, so each saved step goes: local DeepSpeed checkpoint ->
uploaded file by file under `train/<run>/step-NNNNNN/` -> `manifest.json` (step, metrics) written last.
A step without its manifest is an unfinished upload and is ignored (and removed) on resume.

    train/<run>/spec.json                   what this run is (model, phase, data, seeds)
    train/<run>/step-000020/ds/...          the DeepSpeed checkpoint (every rank's partitions)
    train/<run>/step-000020/model.safetensors + model_config.json   fp32 consolidated weights
    train/<run>/step-000020/manifest.json   {"step", "val_loss", "train_loss", "tokens", ...}
    train/<run>/manifest.json               the finished run: every checkpoint with its metrics
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from primer.store import ArtifactStore, StageOutput

STEP_DIR = re.compile(r"step-(\d{6,})$")


def step_name(step: int) -> str:
    return f"step-{step:06d}"


def step_output(store: ArtifactStore, run_key: str, step: int) -> StageOutput:
    return store.output("train", f"{run_key}/{step_name(step)}")


def list_checkpoints(store: ArtifactStore, run_key: str) -> list[dict[str, Any]]:
    """Manifests of every complete checkpoint of a run, by step."""
    root = store.path("train", run_key)
    if not store.fs.exists(root):
        return []
    found = []
    for entry in store.fs.ls(root, detail=False):
        m = STEP_DIR.search(entry.rstrip("/"))
        if m:
            out = step_output(store, run_key, int(m.group(1)))
            if out.is_complete():
                found.append(out.read_manifest())
    return sorted(found, key=lambda c: c["step"])


def latest_checkpoint(store: ArtifactStore, run_key: str) -> dict[str, Any] | None:
    checkpoints = list_checkpoints(store, run_key)
    return checkpoints[-1] if checkpoints else None


def upload_dir(out: StageOutput, local_dir: Path, prefix: str) -> int:
    """Commit every file under `local_dir` to the step output as `prefix/<relative path>`."""
    n = 0
    for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        out.commit_file(path, f"{prefix}/{path.relative_to(local_dir).as_posix()}")
        n += 1
    return n


def download_checkpoint(store: ArtifactStore, manifest: dict[str, Any], local_dir: Path, prefix: str = "ds") -> Path:
    """Fetch the files under `prefix/` of a checkpoint to `local_dir` (returns local_dir)."""
    for f in manifest["files"]:
        if f["name"].startswith(prefix + "/"):
            store.download(f"{manifest['uri']}/{f['name']}", local_dir / f["name"][len(prefix) + 1:])
    return local_dir
