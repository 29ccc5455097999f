"""Deduplication (exact + MinHash near-duplicates) and the diversity report."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from typing import Any, Callable

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
