"""Seeding textbook prompts with code extracts of a curate output (issue 16.5, cosmopedia's method): the
seeded share, extracts of the curated documents (bounded, chosen by content hash), their place in the
request keys (a re-run pays nothing twice), the plan, the manifest, and a bad seed_source in one line."""

from __future__ import annotations

import hashlib
import re
import sysconfig
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from primer.config import StoreConfig, load_config
from primer.errors import InputError
from primer.store import open_store
from tasks.synth import prompts as P
from tasks.synth.plan import build_plan, render
from tasks.synth.seeds import resolve_seed_source
from tasks.synth.stage import prepare
from tests.support.openai_server import prompt_text
from tests.synth import scripted
from tests.synth.test_stage import _rows, overrides, run_synthesis

EXTRACT = re.compile(r"extract of real Python code:\n\n(`{3,4})python\n(.*?)\n\1\n", re.S)


def _stdlib_texts(n: int) -> dict[str, str]:
    """Real code: the first n modules of a few standard-library packages (most longer than an extract)."""
    base = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(f for pkg in ("json", "html", "urllib", "email", "http") for f in (base / pkg).glob("*.py"))
    texts = {f"{f.parent.name}/{f.name}": f.read_text(encoding="utf-8") for f in files}
    return dict(list({k: v for k, v in texts.items() if v.strip()}.items())[:n])


def write_curated(root: Path, docs: dict[str, str], key: str = "seedtest") -> dict:
    """A curate output as the hand-off contract has it: Parquet parts listed by its manifest's
    `documents` dataset (id, source, text, sha256)."""
    out = open_store(StoreConfig(root=str(root))).output("curate", key)
    items = list(docs.items())
    halves = [items[: len(items) // 2], items[len(items) // 2:]]
    for i, part in enumerate(halves):
        with out.open_local(f"data/part-{i:05d}.parquet") as local:
            pq.write_table(pa.table({"id": [k for k, _ in part], "source": ["stdlib"] * len(part),
                                     "text": [v for _, v in part],
                                     "sha256": [hashlib.sha256(v.encode()).hexdigest() for _, v in part]}), local)
    return out.commit({"what": "curated documents", "documents": len(items), "datasets": {"documents": {
        "files": [f"data/part-{i:05d}.parquet" for i in range(2)], "format": "parquet", "text_column": "text"}}})


def test_seeded_share_quotes_curated_extracts_and_a_rerun_pays_nothing(prefect_harness, scripted_server, tmp_path):
    root = tmp_path / "store"
    docs = _stdlib_texts(16)
    write_curated(root, docs)
    prompts: list[str] = []

    def recording(req):
        prompts.append(prompt_text(req))
        return scripted.responder(req)

    scripted_server.responder = recording
    ov = overrides(scripted_server, root, **{"synth.seed_source": "curate/seedtest", "synth.seed_fraction": 0.25,
                                             "synth.seed_extract_chars": 600, "synth.textbooks": 12})
    uri, res = run_synthesis(ov)
    seeded = [EXTRACT.search(p) for p in prompts if "extract of real Python code" in p]
    assert len(seeded) == round(12 * 0.25) == 3 and all(seeded)
    flat = {k: v.replace("\r\n", "\n") for k, v in docs.items()}
    for m in seeded:   # each quotes a bounded extract of one curated document
        code = m.group(2)
        assert 0 < len(code) <= 600 and any(code in text for text in flat.values()), code[:200]
    # the documents chosen: the 3 smallest sha256(synth.seed, text), whatever the file order
    seed = load_config("tiny", ov).synth.seed
    rank = {k: hashlib.sha256(f"{seed}\0{v}".encode()).hexdigest() for k, v in docs.items()}
    chosen = sorted(rank, key=rank.get)[:3]
    tb, _ = _rows(uri, "textbooks.parquet")
    assert sorted(r["seed"] for r in tb if r["seed"]) == sorted(chosen)
    assert sum(1 for r in tb if not r["seed"]) == 9 and all(r["topic"] and r["audience"] for r in tb)
    m = res.manifest
    s = m["seeding"]
    assert (s["seed_source"], s["dataset"], s["requests"], s["wanted"], s["textbooks"]) == \
        ("curate/seedtest", "documents", 3, 3, 3)
    assert s["uri"].endswith("curate/seedtest") and s["fingerprint"] and s["fraction"] == 0.25
    assert len(prompts) == len(set(prompts)) == scripted_server.stats.successful   # no prompt sent twice

    # a changed knob that leaves the prompts alone: a new output, every answer from the ledger
    before = scripted_server.stats.total
    other, res2 = run_synthesis({**ov, "synth.min_chars": 301})
    assert other != uri and scripted_server.stats.total == before
    assert res2.manifest["seeding"]["textbooks"] == 3
    # more textbooks: 4 seeded (the 3 before + 1) and 10 plain (the 9 before + 1): 2 new requests only
    more, res3 = run_synthesis({**ov, "synth.textbooks": 14})
    assert scripted_server.stats.successful - m["teacher_usage"]["succeeded"] == 2
    assert set(scripted_server.stats.per_key_success.values()) == {1}
    assert res3.manifest["seeding"]["requests"] == 4


def test_plan_counts_seeded_requests_capped_by_the_documents(tmp_path):
    root = tmp_path / "store"
    manifest = write_curated(root, _stdlib_texts(10))
    topics, _ = P.load_topic_tree()
    pools, _ = P.load_exercise_topics()
    base = {"store.root": str(root), "synth.seed_source": manifest["uri"], "synth.textbooks": 40}
    cfg = load_config("tiny", {**base, "synth.seed_fraction": 0.1})
    plan = build_plan(cfg, topics, pools, seed=resolve_seed_source(cfg))
    tb = plan["kinds"]["textbooks"]
    assert (tb["seeded"], tb["requests"], plan["seeding"]["documents"]) == (4, 40, 10)
    assert "Seeded: 4 of the 40 textbook requests (synth.seed_fraction 0.1)" in render(plan)
    unseeded = build_plan(load_config("tiny", {"store.root": str(root), "synth.textbooks": 40}), topics, pools)
    assert tb["prompt_tokens"] > unseeded["kinds"]["textbooks"]["prompt_tokens"]   # extracts make prompts longer
    assert unseeded["seeding"] is None and unseeded["kinds"]["textbooks"]["seeded"] == 0
    full = load_config("tiny", {**base, "synth.seed_fraction": 1.0})
    tb = build_plan(full, topics, pools, seed=resolve_seed_source(full))["kinds"]["textbooks"]
    assert tb["seeded"] == 10 and tb["requests"] == 40   # one extract per document; the rest plain


def test_bad_seed_source_is_one_line_naming_the_setting(tmp_path, monkeypatch, scripted_server):
    root = tmp_path / "store"
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.py").write_text("x = 1\n")
    synth_like = open_store(StoreConfig(root=str(root))).output("synthesize", "k1")
    with synth_like.open_local("textbooks.parquet") as local:
        pq.write_table(pa.table({"id": ["a"], "text": ["x = 1\n"]}), local)
    synth_like.commit({"datasets": {"textbooks": {"files": ["textbooks.parquet"], "format": "parquet",
                                                  "text_column": "text"}}})
    no_docs = open_store(StoreConfig(root=str(root))).output("curate", "nodocs")
    no_docs.commit({"datasets": {}})
    for bad, why in ((str(tmp_path / "nowhere"), "no manifest.json"), (str(raw), "no manifest.json"),
                     ("synthesize/k1", "expected a curate output, found a 'synthesize' output"),
                     ("curate/nodocs", "lists no datasets")):
        cfg = load_config("tiny", overrides(scripted_server, root, **{"synth.seed_source": bad,
                                                                      "synth.seed_fraction": 0.5}))
        with pytest.raises(InputError) as e:
            prepare(cfg)
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(f"synth.seed_source={bad!r}") and why in msg, msg
    assert scripted_server.stats.total == 0
