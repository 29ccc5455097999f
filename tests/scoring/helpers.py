"""A training run written in the exact checkpoint layout, without DeepSpeed (training tests cover that).

    run = write_run(store, tokenizer, steps=(10, 20), val_losses=(3.2, 3.1))
    run["uri"], run["checkpoints"][0]["uri"]

Layout (as primer.training.program + tasks.train.run_summary write it):
    tokenizer/<k>/tokenizer.json
    pack/<k>/manifest.json                      tokenizer: {uri, sha256, vocab_size, eos_id, eos_token}
    train/<run>/step-NNNNNN/model.safetensors   fp32, Primer names
    train/<run>/step-NNNNNN/model_config.json
    train/<run>/step-NNNNNN/manifest.json       step, val_loss, train_loss, tokens, weights
    train/<run>/spec.json + manifest.json       checkpoints, inputs.shards
"""

from __future__ import annotations

import json

import torch

from model import PhiLM, preset
from primer.store import ArtifactStore, content_key, sha256_bytes
from primer.training.checkpoints import step_name, step_output

EOS_TOKEN = "<|endoftext|>"


def tiny_config(vocab_size: int, eos_id: int, **kw):
    base = dict(vocab_size=vocab_size, n_layer=2, n_head=4, d_model=64, d_mlp=256, rotary_dim=8, max_seq_len=512,
                eos_token_id=eos_id, init_std=0.2)  # init_std 0.2: logits far from uniform, greedy text varies
    return preset("tiny", **{**base, **kw})


def make_model(cfg, seed: int) -> PhiLM:
    torch.manual_seed(seed)
    return PhiLM(cfg).eval()


def write_tokenizer_and_shards(store: ArtifactStore, tokenizer, inputs: list[dict] | None = None) -> dict:
    """A pack output naming the tokenizer and (optionally) its `inputs` (the documents it was packed from)."""
    data = tokenizer.to_str().encode()
    sha = sha256_bytes(data)
    tok_uri = store.uri("tokenizer", sha[:20], "tokenizer.json")
    store.write_bytes(tok_uri, data)
    eos = tokenizer.token_to_id(EOS_TOKEN)
    out = store.output("pack", content_key("test-shards", sha, inputs or []))
    if not out.is_complete():
        out.commit({"kind": "token_shards", "seq_len": 256, "splits": {}, "inputs": inputs or [],
                    "tokenizer": {"uri": tok_uri, "sha256": sha, "vocab_size": tokenizer.get_vocab_size(),
                                  "eos_id": eos, "eos_token": EOS_TOKEN, "trained": True}})
    return {"uri": out.uri, "tokenizer_uri": tok_uri, "eos_id": eos, "vocab_size": tokenizer.get_vocab_size()}


def write_checkpoint(store: ArtifactStore, run_key: str, step: int, model: PhiLM, **metrics) -> dict:
    from safetensors.torch import save_file

    out = step_output(store, run_key, step)
    with out.open_local("model.safetensors") as local:
        save_file({k: v.detach().float().contiguous() for k, v in model.state_dict().items()}, str(local))
    with out.open_local("model_config.json") as local:
        local.write_text(json.dumps(model.cfg.to_dict(), indent=2))
    return out.commit({"kind": "checkpoint", "run": run_key, "phase": "pretrain", "step": step, "tag": step_name(step),
                       "zero_stage": 2, "weights": out.file_uri("model.safetensors"), **metrics})


def write_run(store: ArtifactStore, tokenizer, steps=(10, 20), val_losses=(3.2, 3.1), seed: int = 0,
              inputs: list[dict] | None = None, **model_kw) -> dict:
    shards = write_tokenizer_and_shards(store, tokenizer, inputs)
    cfg = tiny_config(shards["vocab_size"], shards["eos_id"], **model_kw)
    run_key = content_key("test-run", seed, list(steps), list(val_losses), cfg.to_dict(), shards["uri"])
    checkpoints = []
    for i, (step, vl) in enumerate(zip(steps, val_losses)):
        m = write_checkpoint(store, run_key, step, make_model(cfg, seed + i), val_loss=vl, train_loss=vl + 0.1,
                             tokens=step * 1000)
        checkpoints.append({k: m.get(k) for k in ("step", "uri", "weights", "train_loss", "val_loss", "tokens")})
    out = store.output("train", run_key)
    if out.is_complete():
        return out.read_manifest()
    spec = {"phase": "pretrain", "model": cfg.to_dict(), "shards": shards["uri"], "run_key": run_key}
    out.write_json("spec.json", spec)
    return out.commit({"kind": "training_run", "version": 1, "phase": "pretrain", "run_key": run_key,
                       "model": cfg.to_dict(), "inputs": {"shards": shards["uri"], "shards_hash": "test",
                                                          "init_weights": None},
                       "checkpoints": checkpoints})
