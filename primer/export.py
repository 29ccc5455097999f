"""Release a checkpoint as a Hugging Face model directory: `release/<key>/` on the artifact store.

    release/<key>/model.safetensors          weights with transformers' Phi names (q/k/v split), export.dtype
    release/<key>/config.json                `PhiConfig` (architectures: PhiForCausalLM)
    release/<key>/generation_config.json     eos / pad ids
    release/<key>/tokenizer.json             the byte-level BPE the model was trained with
    release/<key>/tokenizer_config.json      PreTrainedTokenizerFast, <|endoftext|> as eos/bos/unk/pad
    release/<key>/special_tokens_map.json
    release/<key>/README.md                  model card: provenance, selection scores, phi-1 reference numbers
    release/<key>/primer.json                Primer's own record: checkpoint, run, model_config, scores
    release/<key>/manifest.json              written last

`PhiForCausalLM.from_pretrained(dir)` and `PreTrainedTokenizerFast.from_pretrained(dir)` (or the Auto
classes) load it; `load_release` turns it back into a PhiLM for Primer's own generation and `primer serve`.
The key hashes the weights, tokenizer, name, dtype and the scores in the card, so a release never changes.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from primer.errors import InputError, StoreError
from primer.store import MANIFEST, ArtifactStore, content_key, filesystem_for

EXPORT_VERSION = 1
RELEASE_FILES = ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
                 "tokenizer_config.json", "special_tokens_map.json", "README.md", "primer.json")
# phi-1 paper (Gunasekar et al. 2023, "Textbooks Are All You Need"), pass@1.
PAPER_SCORES = [
    {"model": "phi-1 (1.3B)", "humaneval": 0.506, "mbpp": 0.555},
    {"model": "phi-1-small (350M)", "humaneval": 0.45, "mbpp": None},
    {"model": "phi-1-base (1.3B, no finetune)", "humaneval": 0.29, "mbpp": None},
]


def hf_state_dict(model, dtype: str = "fp32") -> dict[str, Any]:
    """transformers-named, contiguous tensors; a tied lm_head.weight is dropped (HF re-ties it on load)."""
    from model.hf import to_hf_state_dict
    from primer.scoring.backends import torch_dtype

    sd = to_hf_state_dict(model)
    if model.cfg.tie_embeddings:
        sd.pop("lm_head.weight", None)
    return {k: v.detach().to("cpu", torch_dtype(dtype)).contiguous().clone() for k, v in sd.items()}


def tokenizer_files(tokenizer_json: str, eos_token: str, max_len: int) -> dict[str, str]:
    special = {"eos_token": eos_token, "bos_token": eos_token, "unk_token": eos_token, "pad_token": eos_token}
    config = {"tokenizer_class": "PreTrainedTokenizerFast", **special, "model_max_length": max_len,
              "add_bos_token": False, "add_eos_token": False, "clean_up_tokenization_spaces": False,
              "padding_side": "left"}
    return {"tokenizer.json": tokenizer_json, "tokenizer_config.json": json.dumps(config, indent=2),
            "special_tokens_map.json": json.dumps(special, indent=2)}


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def model_card(name: str, info: dict[str, Any]) -> str:
    cfg = info["model_config"]
    sel = info.get("selection") or {}
    ckpt = info["checkpoint"]
    lines = [
        "---", "library_name: transformers", "pipeline_tag: text-generation", "tags: [code, phi, primer]", "---", "",
        f"# {name}", "",
        "A phi-1-architecture code model trained with [Primer](https://github.com/) (the \"Textbooks Are All You "
        "Need\" recipe). Loads with `transformers`:", "",
        "```python",
        "from transformers import PhiForCausalLM, PreTrainedTokenizerFast",
        "model = PhiForCausalLM.from_pretrained(path)",
        "tok = PreTrainedTokenizerFast.from_pretrained(path)",
        "```", "",
        "## Model", "",
        f"- {info['num_params']:,} parameters: {cfg['n_layer']} layers, d_model {cfg['d_model']}, {cfg['n_head']} "
        f"heads, MLP {cfg['d_mlp']}, rotary dim {cfg['rotary_dim']}, context {cfg['max_seq_len']}, vocab "
        f"{cfg['vocab_size']} (byte-level BPE, `<|endoftext|>` = id {cfg['eos_token_id']}).",
        f"- Weights: {info['dtype']}. Checkpoint `{ckpt['uri']}` (step {ckpt.get('step')}, "
        f"validation loss {ckpt.get('val_loss')}).", "",
        "## Scores", "",
    ]
    if sel:
        lines += [f"Chosen among {sel.get('n_candidates')} checkpoints of its run by: {sel.get('rule_text')}", "",
                  f"- MBPP validation (task ids 511-600, {sel.get('n_tasks')} tasks, `{sel.get('prompt_format')}` "
                  f"prompt, greedy) pass@1: **{_pct(sel.get('pass@1'))}**",
                  f"- validation loss: {sel.get('val_loss')}", ""]
    else:
        lines += ["No checkpoint selection was run for this release (exported directly).", ""]
    lines += ["Benchmark scores (HumanEval, MBPP test) come from `primer evaluate` on this release; reference "
              "numbers from the phi-1 paper (pass@1, greedy):", "",
              "| model | HumanEval | MBPP |", "|---|---|---|"]
    lines += [f"| {r['model']} | {_pct(r['humaneval'])} | {_pct(r['mbpp'])} |" for r in PAPER_SCORES]
    lines += ["", "## Provenance", "", "```json", json.dumps({k: info[k] for k in ("run", "tokenizer")}, indent=2),
              "```", ""]
    return "\n".join(lines)


def export_checkpoint(store: ArtifactStore, ckpt_uri: str, *, name: str = "primer-phi", dtype: str = "fp32",
                      selection: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write (or reuse) the release of one checkpoint. Returns the release manifest."""
    from transformers import GenerationConfig, PhiConfig

    from model import num_params
    from model.hf import to_hf_config
    from primer.scoring import checkpoints as C

    ckpt = C.read_checkpoint(store, ckpt_uri)
    run_uri = C.run_uri_of_checkpoint(ckpt["uri"])
    run = C.run_info(store, run_uri)
    tok_info = C.tokenizer_info(store, run)
    tokenizer_json = _read_text(store, tok_info["uri"])
    weights_sha = C.file_sha(ckpt, "model.safetensors")
    sel_summary = None
    if selection:
        chosen = selection["chosen"]
        # refs, not URIs: the key (and the card) must not depend on where the store lives
        sel_summary = {"uri": store.ref(selection["uri"]), "rule": selection["rule"], "rule_text": selection["rule_text"],
                       "n_candidates": len(selection["candidates"]), "prompt_format": selection["prompt_format"],
                       "n_tasks": chosen.get("n_tasks"), "pass@1": chosen.get("pass@1"),
                       "val_loss": chosen.get("val_loss"), "reason": selection.get("reason")}
    key = content_key(EXPORT_VERSION, weights_sha or ckpt.get("content_hash"), tok_info.get("sha256"), name, dtype,
                      sel_summary)
    out = store.output("release", key)
    if out.is_complete():
        return out.read_manifest()
    out.clean_partial()
    model, cfg = C.load_checkpoint_model(store, ckpt, "cpu", "fp32")
    info = {"name": name, "dtype": dtype, "num_params": num_params(cfg), "model_config": cfg.to_dict(),
            "checkpoint": {**{k: ckpt.get(k) for k in ("step", "val_loss", "train_loss", "tokens")},
                           "uri": store.ref(ckpt["uri"])},
            "weights_sha256": weights_sha,
            "run": {"uri": store.ref(run_uri), "run_key": run.get("run_key"), "phase": run.get("phase"),
                    "shards": store.ref(store.resolve(C.shards_of(run)))},
            "tokenizer": {**{k: tok_info.get(k) for k in ("sha256", "vocab_size", "eos_id", "eos_token")},
                          "uri": store.ref(tok_info["uri"])},
            "selection": sel_summary}
    from safetensors.torch import save_file

    with out.open_local("model.safetensors") as local:
        save_file(hf_state_dict(model, dtype), str(local), metadata={"format": "pt"})
    hf_cfg = PhiConfig(**to_hf_config(cfg), architectures=["PhiForCausalLM"], pad_token_id=cfg.eos_token_id)
    hf_cfg.dtype = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[dtype]
    with tempfile.TemporaryDirectory() as tmp:
        hf_cfg.save_pretrained(tmp)
        GenerationConfig(bos_token_id=cfg.eos_token_id, eos_token_id=cfg.eos_token_id,
                         pad_token_id=cfg.eos_token_id).save_pretrained(tmp)
        for fname in ("config.json", "generation_config.json"):
            out.commit_file(Path(tmp) / fname, fname)
    eos_token = tok_info.get("eos_token") or "<|endoftext|>"
    for fname, text in tokenizer_files(tokenizer_json, eos_token, cfg.max_seq_len).items():
        with out.open_local(fname) as local:
            local.write_text(text, encoding="utf-8")
    with out.open_local("README.md") as local:
        local.write_text(model_card(name, info), encoding="utf-8")
    out.write_json("primer.json", info)
    return out.commit({"kind": "release", "version": EXPORT_VERSION, "name": name, "dtype": dtype,
                       "checkpoint": store.ref(ckpt["uri"]), "step": ckpt.get("step"),
                       "weights_sha256": weights_sha, "selection": (sel_summary or {}).get("uri"),
                       "scores": sel_summary})


def _read_text(store: ArtifactStore, uri: str) -> str:
    """A file in the store or anywhere fsspec reaches (a tokenizer given by path), byte for byte."""
    fs, p = filesystem_for(uri, store.cfg)
    try:
        return fs.cat_file(p).decode("utf-8")
    except FileNotFoundError:
        raise StoreError(f"{uri}: not found") from None


def _is_local_dir(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def release_dir(uri: str, store: ArtifactStore | None = None, cache: str | Path | None = None) -> Path:
    """A local directory holding the release at `uri`: a local folder is used in place; a store output (URI
    or `release/<key>` ref) is read through its manifest and downloaded once into `cache`, by content hash."""
    if _is_local_dir(uri):
        path = Path(uri.removeprefix("file://")).expanduser()
        if path.name == MANIFEST:
            path = path.parent
        if (path / "config.json").is_file():
            return path
        resolved = store.resolve(str(path)) if store is not None else str(path)
        if store is None or resolved == str(path):
            raise InputError(f"{uri}: not a release directory (no config.json)")
        if store.is_local:
            return release_dir(resolved)
        uri = resolved
    if store is None:  # a remote URI without store settings: default credentials of its filesystem
        from primer.settings.store import StoreConfig
        from primer.store import open_store

        store = open_store(StoreConfig(root=uri.rstrip("/").rsplit("/", 2)[0]))
    out = store.read_output(uri.rstrip("/").removesuffix("/" + MANIFEST))
    dest = Path(cache or Path(tempfile.gettempdir()) / "primer-releases") / out.content_hash[:24]
    if not (dest / MANIFEST).is_file():
        dest.mkdir(parents=True, exist_ok=True)
        for name in out.file_names():
            store.fs.get_file(store.to_path(out.file_uri(name)), str(dest / name))
        (dest / MANIFEST).write_text(json.dumps(out.manifest))
    return dest


def load_release(uri: str, store: ArtifactStore | None = None, *, device: str = "cpu", dtype: str = "fp32"):
    """(PhiLM in eval mode, tokenizers.Tokenizer, info) from a release directory or store URI."""
    import torch
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    from model import PhiLM
    from model.hf import from_hf_config, from_hf_state_dict
    from primer.scoring.backends import torch_dtype

    path = release_dir(uri, store)
    hf_cfg = json.loads((path / "config.json").read_text())
    cfg = from_hf_config({**hf_cfg, "embd_pdrop": 0.0, "resid_pdrop": 0.0, "attention_dropout": 0.0})
    sd = load_file(str(path / "model.safetensors"))
    if cfg.tie_embeddings and "lm_head.weight" not in sd:
        sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    model = PhiLM(cfg)
    model.load_state_dict({k: v.to(torch.float32) for k, v in from_hf_state_dict(sd, cfg).items()})
    model = model.to(device=device, dtype=torch_dtype(dtype)).eval()
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    info = json.loads((path / "primer.json").read_text()) if (path / "primer.json").is_file() else {}
    manifest = json.loads((path / MANIFEST).read_text()) if (path / MANIFEST).is_file() else {}
    info["content_hash"] = manifest.get("content_hash")
    info["path"] = str(path)
    return model, tokenizer, info


def release_backend(uri: str, store: ArtifactStore | None = None, *, backend: str = "primer", device: str = "auto",
                    dtype: str = "fp32", batch_size: int = 16, seed: int = 1234):
    """A scoring backend over a release: `primer` (PhiLM + model.generate) or `hf` (transformers)."""
    from primer.scoring.backends import HFBackend, PrimerBackend, resolve_device

    path = release_dir(uri, store)
    manifest = json.loads((path / MANIFEST).read_text()) if (path / MANIFEST).is_file() else {}
    meta = {"release": uri, "release_content_hash": manifest.get("content_hash"),
            "weights_sha256": next((f["sha256"] for f in manifest.get("files", [])
                                    if f["name"] == "model.safetensors"), None)}
    if backend == "hf":
        return HFBackend(str(path), device=device, dtype=dtype, batch_size=batch_size, seed=seed, meta=meta)
    model, tokenizer, info = load_release(str(path), device=resolve_device(device), dtype=dtype)
    return PrimerBackend(model, tokenizer, batch_size=batch_size, seed=seed, name=info.get("name") or "primer",
                         meta=meta)
