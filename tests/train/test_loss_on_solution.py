"""`train.<phase>.loss_on=solution`: exercises are trained on their solutions, not on their prompts.

Pack records, for a source with a `prompt_column` (synthesize's exercises name theirs in the manifest), which
tokens of each row are prompt tokens (`prompt_mask`); the training program then sets those targets to -100.
Checked end to end: the mask pack writes equals what an independent tokenization says, and the validation
loss the engine reports equals the loss of the consolidated weights over solution tokens only (and differs
from the loss over all tokens, so the mask did something).
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from primer.config import SourceSpec, load_config
from primer.shards import read_shard_columns
from primer.store import open_store
from primer.training.data import ShardRows, eval_rows, loss_targets
from tasks.train import build_spec, launch, run_summary

os.environ["PRIMER_STRICT_COLLECTIVES"] = "1"

MODEL = {"n_layer": 2, "d_model": 64, "n_head": 4, "d_mlp": 128, "rotary_dim": 8}


def _exercises(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        prompt = (f"def scale_{i}(values: list[int]) -> list[int]:\n"
                  f'    """Return every value times {i + 2}, keeping the order."""')
        solution = f"    return [v * {i + 2} for v in values]\n"
        rows.append({"id": f"ex-{i}", "prompt": prompt, "text": prompt + "\n" + solution, "verified": i % 7 != 3})
    return rows


@pytest.fixture(scope="module")
def exercise_shards(tmp_path_factory, pack_into_store):
    folder = tmp_path_factory.mktemp("exercises")
    rows = _exercises(120)
    pq.write_table(pa.Table.from_pylist(rows), folder / "exercises.parquet")
    source = SourceSpec(uri=str(folder), prompt_column="prompt", keep_if="verified")
    root, uri, manifest = pack_into_store("exstore", source, seq_len=64, val_fraction=0.2)
    return root, uri, manifest, [r for r in rows if r["verified"]]


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def test_pack_marks_exactly_the_prompt_tokens(exercise_shards, tiny_tokenizer):
    root, uri, manifest, rows = exercise_shards
    tok, _ = tiny_tokenizer
    store = open_store(load_config("tiny", {"store.root": root}).store)
    by_text = {r["text"]: r for r in rows}
    seen = 0
    for split in ("train", "val"):
        info = manifest["splits"][split]
        ids, masks = zip(*(read_shard_columns(store.read_bytes(f"{uri}/{s}"), prompt_mask=True)
                           for s in info["shards"]))
        stream, mask = np.concatenate(ids).reshape(-1), np.concatenate(masks).reshape(-1)
        assert int(mask.sum()) == info["prompt_tokens"] > 0
        ends = np.flatnonzero(stream == tok.token_to_id("<|endoftext|>"))
        for start, end in zip(ends[:-1] + 1, ends[1:]):   # whole documents only (not the row-cut first/last)
            doc, m = stream[start:end].tolist(), mask[start:end]
            row = by_text[tok.decode(doc, skip_special_tokens=False)]
            expected = _common_prefix(tok.encode(row["prompt"]).ids, tok.encode(row["text"]).ids)
            assert 0 < expected < len(doc)
            assert m.tolist() == [True] * expected + [False] * (len(doc) - expected), row["id"]
            assert not mask[end], "the EOS that ends a document is a solution target"
            seen += 1
    assert seen >= 80


def _train(root, uri, local, loss_on):
    cfg = load_config("tiny", {
        "store.root": root, "train.shards": uri, "train.local_dir": local, "model.overrides": MODEL,
        "train.nproc": 1, "train.threads_per_rank": 1, "train.pretrain.loss_on": loss_on,
        "train.pretrain.max_steps": 4, "train.pretrain.save_every": 4, "train.pretrain.eval_every": 4,
        "train.pretrain.batch_size": 8, "train.pretrain.micro_batch": 4, "train.pretrain.warmup_steps": 1,
        "train.pretrain.lr": 3e-3, "train.pretrain.eval_batches": 2})
    store = open_store(cfg.store)
    spec = build_spec(cfg, store, "pretrain", cfg.train.shards)
    events = launch(spec, 1, cfg.train.launcher)
    return store, spec, run_summary(store, spec, events)


def _val_loss(store, spec, weights_uri, solution_only: bool) -> float:
    """The consolidated weights' loss on the rows the engine evaluated, computed here from scratch."""
    from safetensors.torch import load

    from model import ModelConfig, PhiLM

    model = PhiLM(ModelConfig.from_dict(spec.model))
    model.load_state_dict(load(store.read_bytes(store.resolve(weights_uri))))
    model.eval()
    rows = ShardRows(store, store.resolve(spec.shards), "val", prompt_mask=True)
    total = n = 0.0
    with torch.no_grad():
        for idx in eval_rows(rows, spec.phase_config.eval_batches, spec.phase_config.micro_batch, 0, 1):
            batch = rows.batch(idx)
            targets = torch.from_numpy(loss_targets(rows, idx, batch, "solution" if solution_only else "all"))
            _, loss = model(torch.from_numpy(batch[:, :-1]), targets)
            count = int((targets != -100).sum())
            total, n = total + loss.item() * count, n + count
    return total / n


def test_engine_validation_loss_counts_solution_tokens_only(exercise_shards, tmp_path):
    root, uri, _, _ = exercise_shards
    store, spec, summary = _train(root, uri, str(tmp_path / "local"), "solution")
    ckpt = summary["checkpoints"][-1]
    solution = _val_loss(store, spec, ckpt["weights"], solution_only=True)
    everything = _val_loss(store, spec, ckpt["weights"], solution_only=False)
    assert ckpt["val_loss"] == pytest.approx(solution, abs=1e-5)
    assert abs(solution - everything) > 1e-3, (solution, everything)


def test_solution_loss_on_shards_without_prompts_fails_at_once_naming_the_setting(pack_into_store, corpus_dir,
                                                                                    tmp_path):
    from primer.errors import ConfigError

    root, uri, _ = pack_into_store("noprompts", SourceSpec(uri=str(corpus_dir / "email")), seq_len=64)
    cfg = load_config("tiny", {"store.root": root, "train.finetune.loss_on": "solution"})
    store = open_store(cfg.store)
    with pytest.raises(ConfigError, match=r"train\.finetune\.loss_on=solution: .* set train\.finetune\.loss_on=all"):
        build_spec(cfg, store, "finetune", uri)
    with pytest.raises(ValueError, match="loss_on=all"):   # and the program's own reader refuses too
        ShardRows(store, uri, "train", prompt_mask=True)
