"""Config + input manifests -> the TrainSpec of one phase (primer/training/spec.py), and its run key.

The key hashes the inputs' *content* (the shards' manifest content_hash, the init weights' sha256), the
model, the phase's hyperparameters and the world size of the actual launch: never a URI, so the same
inputs in a store copied elsewhere resume/reuse the same run.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from primer.config import PrimerConfig
from primer.errors import ConfigError, PrimerError
from primer.store import ArtifactStore, content_key
from primer.training.spec import TRAIN_VERSION, TrainSpec


def model_config(cfg: PrimerConfig, shards_manifest: dict[str, Any], dropout: float,
                 attn_dropout: float) -> dict[str, Any]:
    from model import preset

    tok = shards_manifest["tokenizer"]
    overrides = {**cfg.model.overrides, "vocab_size": tok["vocab_size"], "eos_token_id": tok["eos_id"],
                 "max_seq_len": max(shards_manifest["seq_len"], cfg.model.overrides.get("max_seq_len", 0)),
                 "resid_dropout": dropout, "embd_dropout": dropout, "attn_dropout": attn_dropout}
    try:
        return preset(cfg.model.preset, **overrides).to_dict()
    except ValueError as e:
        raise PrimerError(f"model.overrides: {e}") from None


def hostfile_slots(path: str) -> int:
    """Ranks of a DeepSpeed hostfile (`host slots=N` per line; `#` comments)."""
    total = 0
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise ConfigError(f"train.hostfile: cannot read {path} ({e.strerror})") from None
    for n, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        slots = [p.split("=", 1)[1] for p in line.split()[1:] if p.startswith("slots=")]
        if not slots or not slots[0].isdigit():
            raise ConfigError(f"train.hostfile: {path}:{n}: expected 'HOST slots=N', got {line!r}")
        total += int(slots[0])
    if not total:
        raise ConfigError(f"train.hostfile: {path} lists no hosts")
    return total


def launch_world(cfg: PrimerConfig) -> int:
    """Ranks the launch will start: the hostfile's slots, else nnodes x nproc."""
    if cfg.train.hostfile:
        return hostfile_slots(cfg.train.hostfile)
    return cfg.train.nnodes * cfg.train.nproc


def _init_weights_hash(store: ArtifactStore, uri: str) -> str:
    """sha256 of a model.safetensors as its checkpoint manifest records it (read, not recomputed)."""
    from primer.store import StoreError

    parent, name = uri.rstrip("/").rsplit("/", 1)
    try:
        out = store.read_output(parent)
    except StoreError:
        raise PrimerError(f"train.finetune: starting weights {uri} are not a checkpoint in the store") from None
    sha = next((f["sha256"] for f in out.manifest.get("files", []) if f["name"] == name), None)
    if sha is None:
        raise PrimerError(f"train.finetune: {parent} lists no {name}; pretrain with train.consolidate=true")
    return sha


def build_spec(cfg: PrimerConfig, store: ArtifactStore, phase: str, shards: str,
               init_weights: str | None = None) -> TrainSpec:
    shards_out = store.read_output(shards, "pack")
    phase_cfg = getattr(cfg.train, phase)
    world = launch_world(cfg)
    if phase_cfg.batch_size % (phase_cfg.micro_batch * world):
        raise ConfigError(f"train.{phase}.batch_size: {phase_cfg.batch_size} is not a multiple of micro_batch x "
                          f"world = {phase_cfg.micro_batch} x {world}")
    if phase_cfg.loss_on == "solution" and "prompt_tokens" not in shards_out.manifest["splits"]["train"]:
        raise ConfigError(f"train.{phase}.loss_on=solution: the token shards {shards} record no prompt tokens; "
                          "pack a source with a prompt_column (synthesize's exercises have one) or set "
                          f"train.{phase}.loss_on=all")
    init_uri = store.resolve(init_weights) if init_weights else None
    spec = TrainSpec(
        phase=phase, phase_config=phase_cfg,
        model=model_config(cfg, shards_out.manifest, phase_cfg.dropout, phase_cfg.attn_dropout),
        shards=store.ref(shards_out.uri), shards_hash=shards_out.content_hash,
        init_weights=store.ref(init_uri) if init_uri else None,
        init_weights_hash=_init_weights_hash(store, init_uri) if init_uri else None,
        zero_stage=cfg.train.zero_stage, dtype=cfg.train.dtype, seed=cfg.train.seed, world=world,
        consolidate=cfg.train.consolidate, activation_checkpointing=cfg.train.activation_checkpointing,
    )
    spec.run_key = content_key(TRAIN_VERSION, spec.identity())
    spec.store = dataclasses.asdict(store.cfg)
    spec.local_dir = str(Path(cfg.train.local_dir).resolve())
    spec.threads_per_rank = cfg.train.threads_per_rank or max(1, (os.cpu_count() or 2) // cfg.train.nproc)
    spec.peak_tflops = cfg.train.peak_tflops
    return spec
