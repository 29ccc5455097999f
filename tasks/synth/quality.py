"""Deduplication (exact + MinHash near-duplicates), the near-duplicate rate and the diversity report."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from typing import Any, Callable

import numpy as np

from primer.minhash import MinHasher

WORD = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def _shingles(text: str, n: int = 5) -> set[bytes]:
    w = words(text)
    if len(w) < n:
        return {" ".join(w).encode()}
    return {" ".join(w[i:i + n]).encode() for i in range(len(w) - n + 1)}


def dedup(rows: list[dict[str, Any]], threshold: float, key: Callable[[dict[str, Any]], str] = lambda r: r["text"],
          num_perm: int = 64) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], str, str]]]:
    """(kept, dropped) where dropped = (row, reason, id of the row it duplicates). The first row wins."""
    kept: list[dict[str, Any]] = []
    dropped: list[tuple[dict[str, Any], str, str]] = []
    exact: dict[str, str] = {}
    lsh = None
    if threshold < 1.0:
        from datasketch import MinHash, MinHashLSH

        lsh = MinHashLSH(threshold=max(threshold, 0.01), num_perm=num_perm)
    for row in rows:
        text = key(row)
        h = hashlib.sha256(" ".join(words(text)).encode()).hexdigest()
        if h in exact:
            dropped.append((row, "duplicate", exact[h]))
            continue
        if lsh is not None:
            m = MinHash(num_perm=num_perm, seed=1)
            m.update_batch(list(_shingles(text)))
            near = lsh.query(m)
            if near:
                dropped.append((row, "near_duplicate", sorted(near)[0]))
                continue
            lsh.insert(row["id"], m)
        exact[h] = row["id"]
        kept.append(row)
    return kept, dropped


# The near-duplicate rate is measured as curate's dedup measures (primer/minhash.py: code-token 5-gram
# shingles, one-permutation MinHash, LSH bands, then every candidate pair confirmed by estimated Jaccard).
NEAR_DUP_THRESHOLD = 0.8
NEAR_DUP_NUM_PERM = 128
NEAR_DUP_SHINGLE = 5


def near_duplicate_rate(texts: list[str], threshold: float = NEAR_DUP_THRESHOLD, num_perm: int = NEAR_DUP_NUM_PERM,
                        shingle_size: int = NEAR_DUP_SHINGLE, seed: int = 1) -> dict[str, Any]:
    """The share of documents that near-duplicate an earlier one: documents minus clusters, over documents,
    where clusters are the connected components of the confirmed pairs (estimated Jaccard >= threshold).
    That is the share a near-duplicate filter at `threshold` would remove (planted: k copies of one text
    among n give k/n). `pairs`: confirmed candidate pairs (within a band group, each document paired with
    the group's first)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(texts)
    report = {"documents": n, "near_duplicates": 0, "rate": 0.0, "pairs": 0, "threshold": threshold,
              "num_perm": num_perm, "shingle_size": shingle_size, "method": "minhash-lsh (primer/minhash.py)"}
    if n < 2:
        return report
    hasher = MinHasher(num_perm, shingle_size, threshold, seed)
    sigs = np.stack([hasher.signature(t) for t in texts])
    bands = hasher.band_hashes(sigs)                                   # uint64 [n, bands]
    a_parts, b_parts = [], []
    for col in bands.T:   # per band: every document paired with the first of its equal-hash group
        order = np.argsort(col, kind="stable")
        sorted_col = col[order]
        new_group = np.concatenate([[True], sorted_col[1:] != sorted_col[:-1]])
        first = order[np.maximum.accumulate(np.where(new_group, np.arange(n), 0))]
        a_parts.append(first[~new_group])
        b_parts.append(order[~new_group])
    pairs = np.unique(np.stack([np.concatenate(a_parts), np.concatenate(b_parts)], axis=1), axis=0)
    if len(pairs):
        sims = (sigs[pairs[:, 0]] == sigs[pairs[:, 1]]).mean(axis=1)
        pairs = pairs[sims >= threshold]
    if not len(pairs):
        return report
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    clusters, _ = connected_components(graph, directed=False)
    dups = n - int(clusters)
    return {**report, "near_duplicates": dups, "rate": round(dups / n, 4), "pairs": int(len(pairs))}


def distinct_ngrams(texts: list[str], n: int) -> dict[str, float | int]:
    grams: Counter[tuple[str, ...]] = Counter()
    for t in texts:
        w = words(t)
        grams.update(tuple(w[i:i + n]) for i in range(len(w) - n + 1))
    total = sum(grams.values())
    return {"unique": len(grams), "total": total, "distinct": round(len(grams) / total, 4) if total else 0.0}


def diversity_report(rows: list[dict[str, Any]], topics_requested: list[str]) -> dict[str, Any]:
    texts = [r["text"] for r in rows]
    covered = Counter(r.get("topic", "") for r in rows)
    report: dict[str, Any] = {
        "documents": len(rows),
        "chars": sum(len(t) for t in texts),
        "distinct_1": distinct_ngrams(texts, 1),
        "distinct_2": distinct_ngrams(texts, 2),
        "distinct_3": distinct_ngrams(texts, 3),
        "topics_requested": len(set(topics_requested)),
        "topics_covered": len(set(covered) & set(topics_requested)),
        "topic_coverage": round(len(set(covered) & set(topics_requested)) / max(1, len(set(topics_requested))), 4),
        "top_topics": covered.most_common(10),
    }
    for col in ("audience", "style"):
        if rows and col in rows[0]:
            report[f"by_{col}"] = dict(Counter(r.get(col, "") for r in rows))
    if rows and "function_name" in rows[0]:
        names = [r["function_name"] for r in rows]
        report["distinct_function_names"] = len(set(names))
        report["verified"] = sum(bool(r.get("verified")) for r in rows)
    return report
