"""Finding and loading what gets scored: training checkpoints and their tokenizer, releases, endpoints.

A checkpoint (`train/<run>/step-NNNNNN/`) has `model.safetensors` (fp32, Primer names), `model_config.json`
and a manifest with its metrics; its run's manifest (or spec.json while the run is unfinished) names the
token shards, whose manifest names the tokenizer (`tokenizer.uri`, `eos_id`).
"""

from __future__ import annotations

import json
from typing import Any

from primer.errors import InputError, StoreError
from primer.store import MANIFEST, ArtifactStore, filesystem_for


def _dir(uri: str) -> str:
    uri = uri.rstrip("/")
    return uri[: -len(MANIFEST) - 1] if uri.endswith("/" + MANIFEST) else uri


def read_manifest(store: ArtifactStore, uri: str, what: str) -> dict[str, Any]:
    """The manifest of the output at `uri` (the directory or its manifest.json)."""
    path = f"{_dir(uri)}/{MANIFEST}"
    fs, p = filesystem_for(path, store.cfg)
    if not fs.exists(p):
        raise StoreError(f"{_dir(uri)}: not a finished {what} (no {MANIFEST})")
    return json.loads(fs.cat_file(p))


def read_bytes(store: ArtifactStore, uri: str) -> bytes:
    fs, p = filesystem_for(uri, store.cfg)
    try:
        return fs.cat_file(p)
    except FileNotFoundError:
        raise StoreError(f"{uri}: not found") from None


def file_sha(manifest: dict[str, Any], name: str) -> str | None:
    return next((f["sha256"] for f in manifest.get("files", []) if f["name"] == name), None)


def run_info(store: ArtifactStore, run_uri: str) -> dict[str, Any]:
    """The run manifest, or (unfinished run) its spec.json; raises when neither exists."""
    run_uri = _dir(run_uri)
    try:
        return read_manifest(store, run_uri, "training run")
    except StoreError:
        pass
    try:
        return json.loads(read_bytes(store, f"{run_uri}/spec.json"))
    except StoreError:
        raise StoreError(f"{run_uri}: not a training run (no manifest.json or spec.json)") from None


def shards_of(run: dict[str, Any]) -> str:
    shards = (run.get("inputs") or {}).get("shards") or run.get("shards")
    if not shards:
        raise InputError("training run names no token shards (inputs.shards / shards)")
    return shards


def tokenizer_info(store: ArtifactStore, run: dict[str, Any]) -> dict[str, Any]:
    """`{"uri", "sha256", "eos_id", "eos_token", ...}` of the tokenizer a run was trained with."""
    shards = read_manifest(store, shards_of(run), "token-shard output")
    tok = shards.get("tokenizer") or {}
    if not tok.get("uri"):
        raise InputError(f"{shards_of(run)}: shard manifest names no tokenizer.uri")
    return tok


def load_tokenizer(store: ArtifactStore, info: dict[str, Any]):
    from tokenizers import Tokenizer

    return Tokenizer.from_str(read_bytes(store, info["uri"]).decode("utf-8"))


def run_uri_of_checkpoint(ckpt_uri: str) -> str:
    return _dir(ckpt_uri).rsplit("/", 1)[0]


def load_checkpoint_model(store: ArtifactStore, ckpt: dict[str, Any], device: str = "cpu", dtype: str = "fp32"):
    """PhiLM (eval mode) from a checkpoint manifest's consolidated weights."""
    import torch
    from safetensors.torch import load as load_safetensors

    from model import ModelConfig, PhiLM
    from primer.scoring.backends import torch_dtype

    uri = ckpt["uri"]
    weights = ckpt.get("weights") or f"{uri}/model.safetensors"
    try:
        cfg_dict = json.loads(read_bytes(store, f"{uri}/model_config.json"))
    except StoreError:
        raise StoreError(f"{uri}: no model_config.json (was the run trained with train.consolidate=false?)") from None
    cfg = ModelConfig.from_dict({**cfg_dict, "embd_dropout": 0.0, "resid_dropout": 0.0, "attn_dropout": 0.0})
    state = load_safetensors(read_bytes(store, weights))
    with torch.device("meta"):
        model = PhiLM(cfg)
    model = model.to_empty(device="cpu")
    model.load_state_dict(state)
    cos, sin = _rotary(cfg)
    model.rope_cos, model.rope_sin = cos, sin
    return model.to(device=device, dtype=torch_dtype(dtype)).eval(), cfg


def _rotary(cfg):
    from model.rotary import rotary_tables

    return rotary_tables(cfg.rotary_dim, cfg.max_seq_len, cfg.rope_theta)


def checkpoint_backend(store: ArtifactStore, ckpt_uri: str, *, device: str = "auto", dtype: str = "fp32",
                       batch_size: int = 16, seed: int = 1234, run: dict[str, Any] | None = None):
    """A PrimerBackend over one checkpoint (`train/<run>/step-NNNNNN`)."""
    from primer.scoring.backends import PrimerBackend, resolve_device

    ckpt = read_manifest(store, ckpt_uri, "checkpoint")
    run = run or run_info(store, run_uri_of_checkpoint(ckpt["uri"]))
    tok_info = tokenizer_info(store, run)
    model, cfg = load_checkpoint_model(store, ckpt, resolve_device(device), dtype)
    if cfg.eos_token_id != tok_info["eos_id"]:
        raise InputError(f"{ckpt['uri']}: model eos_token_id {cfg.eos_token_id} != tokenizer eos_id {tok_info['eos_id']}")
    meta = {"checkpoint": ckpt["uri"], "step": ckpt.get("step"),
            "weights_sha256": file_sha(ckpt, "model.safetensors"), "tokenizer_sha256": tok_info.get("sha256")}
    return PrimerBackend(model, load_tokenizer(store, tok_info), batch_size=batch_size, seed=seed, meta=meta)
