"""Near-duplicate pairs whose MinHash estimate is close to the threshold are decided by their exact shingle-set
Jaccard (`curate.near_exact_margin`), so the estimate's noise (~0.04 at 0.7 with 128 permutations) neither
loses a real pair just over the threshold nor keeps one just under it.

The pairs are real standard-library files whose estimate falls on the wrong side of 0.7 (found by
bench/bench_curate.py, where datasketch flagged them and the estimate alone did not)."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.curate import dedup as dd
from tests.curate.conftest import STDLIB, reindent, rename

# (a, b): estimate 0.69, exact 0.71 -> a duplicate; (c, d): estimate 0.68, exact 0.64 -> not one
JUST_OVER = ("encodings/utf_16.py", "encodings/utf_32.py")
JUST_UNDER = ("encodings/ascii.py", "encodings/latin_1.py")
FAR = "json/decoder.py"  # and its renamed, re-indented copy: estimate ~0.9, no exact check needed


def _setup():
    hasher = dd.curate_hasher(128, 5, 0.7, seed=1)
    texts = [(STDLIB / rel).read_text() for rel in (*JUST_OVER, *JUST_UNDER, FAR)]
    texts.append(reindent(rename(texts[-1], {"value": "val", "name": "label"})))
    sigs = dd.build_signatures(texts, hasher, True)
    edges = {"exact_a": np.zeros(0, np.int64), "exact_b": np.zeros(0, np.int64),
             "near_a": np.array([0, 2, 4]), "near_b": np.array([1, 3, 5])}
    estimate = (sigs.minhash[edges["near_a"]] == sigs.minhash[edges["near_b"]]).mean(axis=1)
    exact = [dd.exact_jaccard(hasher.shingles(texts[a]), hasher.shingles(texts[b]))
             for a, b in zip(edges["near_a"], edges["near_b"])]
    return hasher, texts, sigs, edges, estimate, exact


def test_the_pairs_sit_on_the_wrong_side_of_the_threshold():
    """The premise: without the exact check these pairs would be decided wrongly."""
    _, _, _, _, estimate, exact = _setup()
    assert estimate[0] < 0.7 <= exact[0]
    assert exact[1] < 0.7 and abs(estimate[1] - 0.7) < 0.1
    assert estimate[2] > 0.8 and exact[2] > 0.8


@pytest.mark.parametrize("margin", [0.1, 0.0])
def test_pairs_near_the_threshold_get_their_exact_jaccard(margin):
    hasher, texts, sigs, edges, estimate, exact = _setup()
    loaded: list[list[int]] = []

    def load_shingles(docs):
        loaded.append(docs.tolist())
        return [hasher.shingles(texts[d]) for d in docs.tolist()]

    out = dd.verify_edges(edges, lambda docs: sigs.minhash[docs], 0.7, True, load_shingles, margin)
    confirmed = dict(zip(zip(out["near_a"].tolist(), out["near_b"].tolist()), out["near_sim"].tolist()))
    if margin:
        assert loaded == [[0, 1, 2, 3]]           # once, and only the documents of the two pairs near 0.7
        assert int(out["exact_checked"]) == 2 and int(out["candidates"]) == 3
        assert confirmed == {(0, 1): exact[0], (4, 5): estimate[2]}
    else:                                          # the estimate decides: the real pair just over is lost
        assert loaded == [] and int(out["exact_checked"]) == 0
        assert confirmed == {(4, 5): estimate[2]}


def test_exact_jaccard():
    a, b = np.array([1, 2, 3, 4], np.uint64), np.array([3, 4, 5], np.uint64)
    assert dd.exact_jaccard(a, b) == 2 / 5
    assert dd.exact_jaccard(a, a) == 1.0 and dd.exact_jaccard(a, np.zeros(0, np.uint64)) == 0.0
    assert dd.exact_jaccard(np.zeros(0, np.uint64), np.zeros(0, np.uint64)) == 1.0
