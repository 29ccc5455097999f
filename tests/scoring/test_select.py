"""Checkpoint selection: the rule, the candidates table, and that the MBPP test split is never touched."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from primer.scoring import mbpp
from primer.scoring.selection import choose
from primer.settings.evaluate import EvaluateConfig, SelectConfig
from tasks.select.run import select_run



def cand(step, p, loss):
    return {"step": step, "pass@1": p, "val_loss": loss}


def test_rule_pass_then_loss_then_latest_step():
    best, why = choose([cand(10, 0.2, 3.0), cand(20, 0.3, 3.5), cand(30, 0.1, 2.0)], "pass_then_loss")
    assert best["step"] == 20 and "highest MBPP-validation pass@1" in why
    best, why = choose([cand(10, 0.2, 3.0), cand(20, 0.2, 2.9), cand(30, 0.1, 2.0)], "pass_then_loss")
    assert best["step"] == 20 and "lowest validation loss" in why
    best, why = choose([cand(10, 0.2, 3.0), cand(20, 0.2, 3.0)], "pass_then_loss")
    assert best["step"] == 20 and "latest step" in why
    assert choose([cand(10, 0.0, None), cand(20, 0.0, 5.0)], "pass_then_loss")[0]["step"] == 20  # no loss: last
    assert choose([cand(10, 0.9, 3.0), cand(20, 0.0, 2.0)], "loss")[0]["step"] == 20
    with pytest.raises(ValueError):
        choose([], "loss")


class Recording:
    """A backend that records every prompt; solves the validation tasks for the checkpoints in `solves`."""

    name = "recording"

    def __init__(self, step, solves, references, seen):
        self.step, self.solves, self.references, self.seen = step, solves, references, seen

    def fingerprint(self):
        return {"backend": "recording", "step": self.step}

    def generate(self, prompts, *, max_new_tokens, stop, temperature, top_p, n):
        self.seen.extend(prompts)
        assert temperature == 0.0 and n == 1
        return [[self.references[p] if self.step in self.solves else "pass\n"] for p in prompts]


@pytest.mark.parametrize("fmt", ["austin3shot", "docstring_first_test"])
def test_selection_never_touches_the_test_split(scoring_store, fmt, mbpp_format_path):
    from primer.scoring.harness import load_problems

    store, run, _ = scoring_store
    tasks = mbpp.load_mbpp(mbpp_format_path)
    val = {p.prompt: p.reference for p in load_problems("mbpp", "validation", fmt, mbpp_tasks=tasks)}
    test_prompts = {p.prompt for p in load_problems("mbpp", "test", fmt, mbpp_tasks=tasks)}
    test_texts = {t.text for t in mbpp.split(tasks, "test")}
    seen: list[str] = []
    sel = SelectConfig(prompt_format=fmt, limit=0, max_new_tokens=32)
    ev = EvaluateConfig(mbpp_path=mbpp_format_path, workers=2)
    manifest = select_run(store, sel, ev, run["uri"],
                          make_backend=lambda c: Recording(c["step"], {10}, val, seen))
    assert len(seen) == 2 * 90 and set(seen) == set(val)
    assert not set(seen) & test_prompts
    assert not any(text in prompt for prompt in seen for text in test_texts)  # not even as a few-shot example
    assert manifest["split"] == "validation"
    assert [int(t) for t in manifest["task_ids"]] == list(range(511, 601))
    # step 10 solves (almost) everything, so it wins although step 20 has the lower validation loss
    by_step = {c["step"]: c for c in manifest["candidates"]}
    assert by_step[10]["pass@1"] == 1.0 and by_step[20]["pass@1"] == 0.0
    assert manifest["chosen"]["step"] == 10 and "highest MBPP-validation pass@1" in manifest["reason"]
    table = pq.read_table(store.to_path(f"{manifest['uri']}/results.parquet")).to_pylist()
    assert len(table) == 180 and {r["step"] for r in table} == {10, 20}
    assert all(511 <= int(r["task_id"]) <= 600 and r["split"] == "validation" for r in table)
    store.fs.rm(store.path("select", manifest["key"]), recursive=True)  # keep the shared store clean


def test_selection_scores_real_checkpoints_and_reuses(scoring_store, mbpp_format_path):
    store, run, _ = scoring_store
    sel = SelectConfig(limit=3, max_new_tokens=16)
    ev = EvaluateConfig(mbpp_path=mbpp_format_path, workers=2, device="cpu")
    first = select_run(store, sel, ev, run["uri"])
    assert first["reused"] is False and len(first["candidates"]) == 2
    assert all(c["pass@1"] == 0.0 and c["n_tasks"] == 3 for c in first["candidates"])  # a random model
    assert first["chosen"]["step"] == 20 and "lowest validation loss" in first["reason"]  # 3.1 < 3.2
    again = select_run(store, sel, ev, run["uri"])
    assert again["reused"] is True and again["uri"] == first["uri"]


def test_without_mbpp_selection_falls_back_to_validation_loss(scoring_store, no_mbpp):
    from primer.settings.evaluate import EvaluateConfig, SelectConfig
    from tasks.select.run import select_run

    store, run, _ = scoring_store
    manifest = select_run(store, SelectConfig(), EvaluateConfig(mbpp_path=""), run["uri"])
    assert manifest["rule"] == "loss" and "chose on validation loss alone" in manifest["reason"]
    assert "PRIMER_MBPP_PATH" in manifest["reason"]
    losses = {c["step"]: c["val_loss"] for c in manifest["candidates"]}
    assert manifest["chosen"]["step"] == min(losses, key=lambda s: (losses[s], -s)) == 20
