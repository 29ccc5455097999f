"""The MinHash near-duplicate rate of generated textbooks (issue 16.5): measured with primer/minhash.py (the
signatures curate's dedup uses), reported in the manifest's `diversity` and the diversity artifact; a
loopback teacher that writes a planted share of near-identical sections gives that share."""

from __future__ import annotations

import json
import random

import pytest

from primer.config import load_config
from primer.store import open_store
from tasks.synth import prompts as P
from tasks.synth.quality import near_duplicate_rate
from tests.synth import scripted
from tests.synth.test_stage import _rows, overrides

WORDS = ("value index total count items result left right middle window key table stack queue node "
         "edge path cost limit step").split()


def _doc(rng: random.Random, n: int = 250) -> str:
    return " ".join(rng.choice(WORDS) + str(rng.randint(0, 9)) for _ in range(n))


@pytest.mark.parametrize("planted", [0, 3, 10])
def test_rate_is_the_planted_share(planted):
    rng = random.Random(planted)
    texts = [_doc(rng) for _ in range(30)]
    for i in range(planted):   # near copies of text 0: one word changed each (Jaccard ~0.96)
        words = texts[0].split()
        words[20 + 7 * i] = "changed"
        texts.append(" ".join(words))
    # half-shared pairs stay below the threshold: not near-duplicates
    texts += [texts[1][: len(texts[1]) // 2] + " " + _doc(rng, 125)]
    rep = near_duplicate_rate(texts)
    assert rep["documents"] == len(texts) and rep["near_duplicates"] == planted
    assert rep["rate"] == round(planted / len(texts), 4) and rep["pairs"] >= planted
    assert (rep["threshold"], rep["num_perm"], rep["shingle_size"]) == (0.8, 128, 5)


def test_manifest_reports_the_rate_of_generated_and_kept_textbooks(prefect_harness, scripted_server, tmp_path):
    ov = overrides(scripted_server, tmp_path / "store", **{"synth.dedup_threshold": 0.8, "synth.textbooks": 12})
    cfg = load_config("tiny", ov)
    topics, _ = P.load_topic_tree()
    plan = P.textbook_plan(topics, cfg.synth.audiences, cfg.synth.styles, 12, cfg.synth.seed)
    planted = [item["topic"].name for item in plan[2:7]]   # 5 answers: one section under 5 headings
    assert sum(any(p in i["topic"].name for p in planted) for i in plan) == 5
    scripted.BAD_TEXTBOOKS.update({name: "near" for name in planted})

    from flows.synthesize import synthesize
    from tests.conftest import flow_artifacts

    state = synthesize(profile="tiny", overrides=ov, return_state=True)
    uri = state.result()
    res = open_store(cfg.store).read_output(uri, "synthesize")
    d = res.manifest["diversity"]
    assert d["textbooks_generated"] == 12 and d["textbook_near_dup_rate"] == round(4 / 12, 4)
    assert d["textbook_near_dup_pairs"] >= 4 and d["threshold"] == 0.8 and d["num_perm"] == 128
    # synth.dedup_threshold=0.8 dropped the 4 later copies: what is kept has none
    assert res.manifest["drops"].get("textbook:near_duplicate") == 4 and d["textbook_near_dup_rate_kept"] == 0.0
    tb, store = _rows(uri, "textbooks.parquet")
    assert len(tb) == 8
    div = store.read_json(f"{uri}/diversity.json")["textbooks"]["near_duplicates"]
    assert div["generated"]["near_duplicates"] == 4 and div["kept"]["documents"] == 8
    art = flow_artifacts(state.state_details.flow_run_id, ["synthesize-diversity"])["synthesize-diversity"]
    table = json.loads(art.data) if isinstance(art.data, str) else art.data
    row = next(r for r in table if r["dataset"] == "textbooks")
    assert row["near_dup_rate_generated"] == round(4 / 12, 4) and row["near_dup_rate_kept"] == 0.0
    assert "Jaccard >= 0.8" in art.description
