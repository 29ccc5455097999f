"""Unit tests of the curate steps on real files (no Prefect)."""

from __future__ import annotations

import numpy as np
import pytest

from primer.documents import Document, DropCounter
from primer.settings.curate import CurateConfig
from tasks.curate import dedup as dd
from tasks.curate.annotation import parse_score
from tasks.curate.heuristic import HeuristicAnnotator
from tasks.curate.decontam import Decontaminator, decontaminator, load_humaneval, load_mbpp
from tasks.curate.filters import FilterChain, default_filters
from tests.curate.conftest import PLANTED, STDLIB, rename, reindent


def _doc(path, rel) -> Document:
    return Document(id=rel, text=path.read_text(), source="t")


@pytest.mark.parametrize("name", ["generated_pb2.py", "py2_print.py", "minified.py", "table.py", "tiny.py"])
def test_filters_drop_planted_with_reason(planted_corpus, name):
    rel = f"zz_planted/{name}"
    chain = FilterChain(default_filters(CurateConfig()), DropCounter())
    keep, reason = chain.check(_doc(planted_corpus / rel, rel))
    assert not keep
    assert reason.split(":")[0] == PLANTED[rel], reason
    assert chain.drops.counts[PLANTED[rel]] == 1


def test_filters_keep_clean_stdlib_files():
    chain = FilterChain(default_filters(CurateConfig()), DropCounter())
    for rel in ("json/decoder.py", "html/parser.py", "textwrap.py", "heapq.py", "bisect.py"):
        keep, reason = chain.check(_doc(STDLIB / rel, rel))
        assert keep, (rel, reason)
    counts = chain.counts["syntax"]
    assert counts.docs_in == counts.docs_out == 5


def test_minhash_near_duplicates_and_distinct_files():
    mh = dd.MinHasher(128, 5, 0.7, seed=1)
    original = (STDLIB / "html" / "parser.py").read_text()
    near = reindent(rename(original, {"rawdata": "raw_text", "HTMLParser": "HtmlReader"}))
    other = (STDLIB / "json" / "decoder.py").read_text()
    a, b, c = mh.signature(original), mh.signature(near), mh.signature(other)
    assert np.mean(a == b) >= 0.7
    assert np.mean(a == c) < 0.2
    # shared bands for the near-duplicate pair, none for the unrelated one
    assert (mh.band_hashes(a) == mh.band_hashes(b)).any()
    assert not (mh.band_hashes(a) == mh.band_hashes(c)).any()
    # deterministic across instances
    assert (dd.MinHasher(128, 5, 0.7, seed=1).signature(original) == a).all()


def test_global_dedup_keeps_first_copy_across_shards():
    texts = [(STDLIB / "heapq.py").read_text(), (STDLIB / "bisect.py").read_text()]
    dup = texts[0].replace("\n", "  \r\n")                          # exact after normalization
    near = reindent(rename(texts[1], {"insort_left": "insert_left", "bisect_right": "bisect_upper"}))
    mh = dd.MinHasher(128, 5, 0.7, seed=3)
    shard0 = dd.build_signatures(texts, mh, True)
    shard1 = dd.build_signatures([near, dup], mh, True)
    buckets = 3
    parts = [dd.bucket_records(0, shard0, buckets, True), dd.bucket_records(1, shard1, buckets, True)]
    sigs = {(0 << 32) | i: shard0.minhash[i] for i in range(2)} | {(1 << 32) | i: shard1.minhash[i] for i in range(2)}
    edges = [dd.verify_edges(dd.bucket_edges([dd.from_npz(p[k]) for p in parts]),
                             lambda docs: np.stack([sigs[int(d)] for d in docs]), 0.7, verify=True)
             for k in range(buckets)]
    result = dd.cluster(edges, 0.7)
    assert (shard1.minhash[1] == shard0.minhash[0]).all()  # exact duplicates: the same signature
    assert result.exact == {(1 << 32) | 1: 0}
    assert set(result.near) == {(1 << 32) | 0}
    assert result.near[(1 << 32) | 0][0] == 1  # kept: the first copy (shard 0, row 1)


def test_decontaminator_finds_humaneval_and_mbpp_but_not_stdlib(mbpp_path):
    checker = decontaminator(mbpp_path, 10, 0.5, 0.9, 30)
    he = next(i for i in load_humaneval() if i.task_id == "HumanEval/10")
    hits = checker.check("import os\n\n" + he.code + "\n\nprint(1)\n")
    assert hits[0].task_id == "HumanEval/10" and hits[0].method == "ngram" and hits[0].score >= 0.9
    assert "make_palindrome" in hits[0].snippet
    # renamed identifiers + reformatting: the structural check still finds it
    he5 = next(i for i in load_humaneval() if i.task_id == "HumanEval/5")
    disguised = reindent(rename(he5.code, {"numbers": "values", "delimeter": "sep", "result": "out",
                                           "intersperse": "weave", "n": "item"}))
    hits = checker.check(disguised)
    assert any(h.task_id == "HumanEval/5" and h.method == "ast" and h.score >= 0.9 for h in hits), hits
    mb = next(i for i in load_mbpp(mbpp_path) if i.task_id == "17")
    assert any(h.benchmark == "mbpp" and h.task_id == "17" for h in checker.check("import re\n\n" + mb.code))
    for rel in ("json/decoder.py", "html/parser.py", "textwrap.py", "heapq.py", "bisect.py", "functools.py"):
        assert checker.check((STDLIB / rel).read_text()) == [], rel


def test_decontaminator_without_mbpp_is_humaneval_only():
    checker = Decontaminator(load_humaneval())
    assert {i.benchmark for i in checker.items} == {"humaneval"}
    assert len(checker.items) == 164


@pytest.mark.parametrize("answer,score", [
    ("Score: 7", 7.0), ("**Score:** 8/10\nClear code.", 8.0), ("I'd rate it 6 out of 10.", 6.0), ("3", 3.0),
    ('{"score": 9}', 9.0), ("score=4.5", 4.5), ("Score: 42", None), ("I'm sorry, but I can't help.", None),
    ("", None), (None, None), ("The code is fine.", None),
])
def test_parse_score(answer, score):
    assert parse_score(answer) == score


def test_heuristic_annotator_rules():
    ann = HeuristicAnnotator()
    good = ann.score((STDLIB / "heapq.py").read_text())
    script = ann.score("import os\nimport sys\nx = 1\ny = 2\nprint(x + y)\nprint(os.sep)\n")
    assert good.score > script.score
    assert script.rationale == "+1 does something"
    assert ann.score("def (:\n").score == 0.0
    tests = ann.score((STDLIB / "test" / "test_heapq.py").read_text())
    assert tests.score <= 2.0 and "test code" in tests.rationale


@pytest.mark.parametrize("answer,score", [
    ("The file defines functions with docstrings.\nEducational score: 4", 8.0),
    ("Educational score: 3/5", 6.0), ("**Educational score:** 5", 10.0), ("Educational score: 7", None),
    ("Score: 4", None), ("", None),
])
def test_parse_rubric_score(answer, score):
    assert parse_score(answer, "rubric") == score


def test_config_validation_names_field():
    from primer.config import load_config
    from primer.errors import ConfigError

    with pytest.raises(ConfigError, match="curate.min_bytes"):
        load_config("tiny", {"curate.min_bytes": 10, "curate.max_bytes": 5})
    with pytest.raises(ConfigError, match="curate.annotator"):
        load_config("tiny", {"curate.annotator": "gpt"})
