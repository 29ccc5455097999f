"""The release loads in transformers (model + tokenizer) and computes Primer's logits."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from primer.export import export_checkpoint, load_release
from primer.scoring import checkpoints as C

ATOL = 1e-4  # fp32; observed max |diff| ~3e-6 with logits of std ~1.6 (summation order, gelu formula)
FILES = {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
         "special_tokens_map.json", "README.md", "primer.json"}


def test_release_loads_in_transformers_with_primer_logits(scoring_store):
    from transformers import AutoModelForCausalLM, AutoTokenizer, PhiForCausalLM, PreTrainedTokenizerFast

    store, run, release = scoring_store
    path = Path(release["uri"])
    assert {f["name"] for f in release["files"]} == FILES and release["uri"].startswith(store.uri("release"))
    hf = PhiForCausalLM.from_pretrained(path).eval()
    tok = PreTrainedTokenizerFast.from_pretrained(path)
    assert type(AutoModelForCausalLM.from_pretrained(path)).__name__ == "PhiForCausalLM"
    assert AutoTokenizer.from_pretrained(path)("x = 1")["input_ids"] == tok("x = 1")["input_ids"]

    ckpt = C.read_checkpoint(store, run["checkpoints"][1]["uri"])
    ours, cfg = C.load_checkpoint_model(store, ckpt)
    primer_tok = C.run_tokenizer(store, C.tokenizer_info(store, run))
    text = "def add(a, b):\n    \"\"\"Add two numbers.\"\"\"\n    return a + b\n\n" * 6
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids == primer_tok.encode(text).ids and tok.decode(ids) == text
    assert tok.eos_token == "<|endoftext|>" and tok.eos_token_id == cfg.eos_token_id == hf.config.eos_token_id
    x = torch.tensor([ids[:128], ids[5:133]])
    assert not (x == cfg.eos_token_id).any()  # HF does no document masking: compare rows without EOS inside
    with torch.no_grad():
        a, b = ours(x)[0], hf(x).logits
    assert ours.cfg.n_layer == 2 and a.std() > 0.5
    torch.testing.assert_close(b, a, atol=ATOL, rtol=0)

    # Primer reads its own release back bit-exactly
    back, _, info = load_release(release["uri"])
    for k, v in ours.state_dict().items():
        torch.testing.assert_close(back.state_dict()[k], v, atol=0, rtol=0)
    assert info["checkpoint"]["step"] == 20 and info["run"]["uri"] == store.ref(run["uri"])  # a ref: store-relative
    card = (path / "README.md").read_text()
    assert "tiny-test" in card and "50.6%" in card and "step 20" in card
    assert json.loads((path / "config.json").read_text())["architectures"] == ["PhiForCausalLM"]


def test_export_is_content_addressed_and_carries_selection_scores(scoring_store):
    store, run, release = scoring_store
    again = export_checkpoint(store, run["checkpoints"][1]["uri"], name="tiny-test")
    assert again["uri"] == release["uri"] and again["content_hash"] == release["content_hash"]
    chosen = {"step": 20, "uri": run["checkpoints"][1]["uri"], "pass@1": 0.25, "n_tasks": 8, "val_loss": 3.1}
    sel = {"uri": "select/x", "rule": "pass_then_loss", "rule_text": "highest pass", "candidates": [chosen, chosen],
           "prompt_format": "docstring_first_test", "chosen": chosen, "reason": "step 20: best"}
    scored = export_checkpoint(store, run["checkpoints"][1]["uri"], name="tiny-test", selection=sel)
    assert scored["uri"] != release["uri"] and scored["scores"]["pass@1"] == 0.25
    card = store.read_bytes(f"{scored['uri']}/README.md").decode()
    assert "MBPP validation" in card and "25.0%" in card and "docstring_first_test" in card
