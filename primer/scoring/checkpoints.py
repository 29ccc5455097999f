"""Training checkpoints as scoring inputs: finding a checkpoint's run and tokenizer, loading its PhiLM.

A checkpoint (`train/<run>/step-NNNNNN/`) has `model.safetensors` (fp32, Primer names), `model_config.json`
and a manifest with its metrics; its run's manifest (or spec.json while the run is unfinished) names the
token shards, whose manifest names the tokenizer (`tokenizer.uri`, `eos_id`). Every manifest is read through
`store.read_output`, and every location a manifest records (a store ref or a URI) through `store.resolve`,
so a copied or moved store still scores.
"""

from __future__ import annotations

import json
from typing import Any

from primer.errors import InputError, StoreError
from primer.store import MANIFEST, ArtifactStore, Output


def output_dir(uri: str) -> str:
    """The output directory of `uri` (the directory itself or its manifest.json)."""
    uri = uri.rstrip("/")
    return uri[: -len(MANIFEST) - 1] if uri.endswith("/" + MANIFEST) else uri


def read_checkpoint(store: ArtifactStore, ckpt_uri: str) -> dict[str, Any]:
    """A checkpoint's manifest, with `uri` = where it lives in this store and `weights` resolved."""
    out = store.read_output(output_dir(ckpt_uri))
    return checkpoint_record(store, {**out.manifest, "uri": out.uri})


def checkpoint_record(store: ArtifactStore, ckpt: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint entry (from its own manifest or a run manifest) with `uri` and `weights` as URIs here."""
    uri = store.resolve(ckpt["uri"]).rstrip("/")
    weights = store.resolve(ckpt["weights"]) if ckpt.get("weights") else f"{uri}/model.safetensors"
    return {**ckpt, "uri": uri, "weights": weights}


def file_sha(manifest: dict[str, Any], name: str) -> str | None:
    return next((f["sha256"] for f in manifest.get("files", []) if f["name"] == name), None)


def run_uri_of_checkpoint(ckpt_uri: str) -> str:
    return output_dir(ckpt_uri).rsplit("/", 1)[0]


def run_info(store: ArtifactStore, run_uri: str) -> dict[str, Any]:
    """The run manifest (with `uri` here), or (unfinished run) its spec.json; raises when neither exists."""
    run_uri = output_dir(store.resolve(run_uri))
    try:
        out = store.read_output(run_uri)
        return {**out.manifest, "uri": out.uri}
    except StoreError:
        pass
    try:
        return {**store.read_json(f"{run_uri}/spec.json"), "uri": run_uri}
    except StoreError:
        raise StoreError(f"{run_uri}: not a training run (no manifest.json or spec.json)") from None


def shards_of(run: dict[str, Any]) -> str:
    shards = (run.get("inputs") or {}).get("shards") or run.get("shards")
    if not shards:
        raise InputError("training run names no token shards (inputs.shards / shards)")
    return shards


def tokenizer_info(store: ArtifactStore, run: dict[str, Any]) -> dict[str, Any]:
    """`{"uri", "sha256", "eos_id", "eos_token", ...}` of the tokenizer a run was trained with (uri resolved)."""
    shards: Output = store.read_output(shards_of(run))
    tok = shards.manifest.get("tokenizer") or {}
    if not tok.get("uri"):
        raise InputError(f"{shards.uri}: shard manifest names no tokenizer.uri")
    return {**tok, "uri": store.resolve(tok["uri"])}


def run_tokenizer(store: ArtifactStore, info: dict[str, Any]):
    """The `tokenizers.Tokenizer` of `tokenizer_info(...)`, through the one loader (primer.tokenizer)."""
    from primer.tokenizer import load_tokenizer

    tok, _ = load_tokenizer(store, info["uri"], info.get("eos_token") or "<|endoftext|>")
    return tok


def load_checkpoint_model(store: ArtifactStore, ckpt: dict[str, Any], device: str = "cpu", dtype: str = "fp32"):
    """PhiLM (eval mode) from a checkpoint record's consolidated weights."""
    import torch  # noqa: F401  (the backends' dtype helper needs it loaded)
    from safetensors.torch import load as load_safetensors

    from model import ModelConfig, PhiLM
    from model.rotary import rotary_tables
    from primer.scoring.backends import torch_dtype

    ckpt = checkpoint_record(store, ckpt)
    uri = ckpt["uri"]
    try:
        cfg_dict = json.loads(store.read_bytes(f"{uri}/model_config.json"))
    except StoreError:
        raise StoreError(f"{uri}: no model_config.json (was the run trained with train.consolidate=false?)") from None
    cfg = ModelConfig.from_dict({**cfg_dict, "embd_dropout": 0.0, "resid_dropout": 0.0, "attn_dropout": 0.0})
    try:
        state = load_safetensors(store.read_bytes(ckpt["weights"]))
    except StoreError:
        raise StoreError(f"{ckpt['weights']}: checkpoint weights not found") from None
    with torch.device("meta"):
        model = PhiLM(cfg)
    model = model.to_empty(device="cpu")
    model.load_state_dict(state)
    model.rope_cos, model.rope_sin = rotary_tables(cfg.rotary_dim, cfg.max_seq_len, cfg.rope_theta)
    return model.to(device=device, dtype=torch_dtype(dtype)).eval(), cfg


def checkpoint_backend(store: ArtifactStore, ckpt_uri: str, *, device: str = "auto", dtype: str = "fp32",
                       batch_size: int = 16, seed: int = 1234, run: dict[str, Any] | None = None):
    """A PrimerBackend over one checkpoint (`train/<run>/step-NNNNNN`)."""
    from primer.scoring.backends import PrimerBackend, resolve_device

    ckpt = read_checkpoint(store, ckpt_uri)
    run = run or run_info(store, run_uri_of_checkpoint(ckpt["uri"]))
    tok_info = tokenizer_info(store, run)
    model, cfg = load_checkpoint_model(store, ckpt, resolve_device(device), dtype)
    if cfg.eos_token_id != tok_info["eos_id"]:
        raise InputError(f"{ckpt['uri']}: model eos_token_id {cfg.eos_token_id} != tokenizer eos_id {tok_info['eos_id']}")
    meta = {"checkpoint": store.ref(ckpt["uri"]), "step": ckpt.get("step"),
            "weights_sha256": file_sha(ckpt, "model.safetensors"), "tokenizer_sha256": tok_info.get("sha256")}
    return PrimerBackend(model, run_tokenizer(store, tok_info), batch_size=batch_size, seed=seed, meta=meta)
