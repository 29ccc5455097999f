"""Benchmark the curate steps on this Python's standard library (documents/s per step), and our near-dedup
against a plain datasketch MinHash + MinHashLSH baseline on the same documents in the same run.

    python bench/bench_curate.py [--max-docs 3000] [--json out.json]

Single process, no Prefect: the numbers are per-core throughput of each step's code.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from primer.config import SourceSpec  # noqa: E402
from primer.documents import DropCounter  # noqa: E402
from primer.settings.curate import CurateConfig  # noqa: E402
from tasks.curate import dedup as dd  # noqa: E402
from tasks.curate.annotate import HeuristicAnnotator  # noqa: E402
from tasks.curate.decontam import decontaminator  # noqa: E402
from tasks.curate.embed import HashedEmbedder  # noqa: E402
from tasks.curate.filters import FilterChain, default_filters  # noqa: E402
from tasks.curate.text import hash64, tokens  # noqa: E402
from tasks.sources import read_documents, resolve_source  # noqa: E402

MBPP = "/work/shared/data/mbpp/mbpp.jsonl"


def rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else float("inf")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-docs", type=int, default=3000, help="hash-sampled standard-library files (0 = all)")
    ap.add_argument("--json", default="", help="also write the results here")
    ap.add_argument("--mbpp", default=MBPP if Path(MBPP).is_file() else "")
    args = ap.parse_args()
    cfg = CurateConfig()
    rows: list[dict] = []

    def record(step: str, n: int, seconds: float, mb: float, **extra) -> None:
        rows.append({"step": step, "docs": n, "seconds": round(seconds, 3), "docs_per_s": rate(n, seconds),
                     "MB_per_s": round(mb / seconds, 2) if seconds > 0 else None, **extra})

    src = resolve_source(SourceSpec(uri="python:stdlib"))
    files = src.files
    if args.max_docs and len(files) > args.max_docs:
        chosen = set(sorted(files, key=lambda f: hash64(f"{cfg.seed}:{f[len(src.base):]}"))[: args.max_docs])
        files = [f for f in files if f in chosen]
    src.files = files
    t = time.perf_counter()
    docs = [d for d in read_documents(src, DropCounter()) if len(d.text) <= cfg.max_bytes]
    mb = sum(len(d.text) for d in docs) / 1e6
    record("read", len(docs), time.perf_counter() - t, mb)

    chain = FilterChain(default_filters(cfg), DropCounter())
    survivors = list(docs)
    for f in chain.filters:  # each filter alone, on everything that reached it
        t = time.perf_counter()
        nxt = [d for d in survivors if f.filter(d)[0]]
        record(f"filter {f.name}", len(survivors), time.perf_counter() - t,
               sum(len(d.text) for d in survivors) / 1e6, dropped=len(survivors) - len(nxt))
        survivors = nxt
    texts = [d.text for d in survivors]
    mb = sum(map(len, texts)) / 1e6

    t = time.perf_counter()
    exact = [dd.exact_hash(x) for x in texts]
    record("exact hash", len(texts), time.perf_counter() - t, mb, duplicates=len(exact) - len(set(exact)))

    # ---- near-dedup: ours (signatures -> partitions -> edges -> verified clusters) ----------------------
    hasher = dd.MinHasher(cfg.num_perm, cfg.shingle_size, cfg.near_threshold, cfg.seed)
    t = time.perf_counter()
    sigs = dd.build_signatures(texts, hasher, True)
    t_sig = time.perf_counter() - t
    parts = dd.bucket_records(0, sigs, cfg.dedup_buckets, False)
    edges = [dd.bucket_edges([dd.from_npz(p)]) for p in parts]
    result = dd.cluster(edges, lambda ds: {int(d): sigs.minhash[int(d) & 0xFFFFFFFF] for d in ds},
                        cfg.near_threshold, True)
    t_ours = time.perf_counter() - t
    record("near-dedup (primer: numpy MinHash + partitioned LSH)", len(texts), t_ours, mb,
           signatures_s=round(t_sig, 3), near_duplicates=len(result.near),
           bands=f"{hasher.bands}x{hasher.rows}")

    # ---- baseline: datasketch MinHash.update_batch + MinHashLSH insert/query on the same shingles ------
    from datasketch import MinHash, MinHashLSH

    t = time.perf_counter()
    lsh = MinHashLSH(threshold=cfg.near_threshold, num_perm=cfg.num_perm)
    base_dups = set()
    for i, x in enumerate(texts):
        toks = tokens(x)
        n = cfg.shingle_size
        sh = {" ".join(toks[j:j + n]).encode() for j in range(max(1, len(toks) - n + 1))}
        m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed)
        m.update_batch(list(sh))
        if lsh.query(m):
            base_dups.add(i)
        lsh.insert(str(i), m)
    t_base = time.perf_counter() - t
    record("near-dedup (baseline: datasketch MinHash + MinHashLSH)", len(texts), t_base, mb,
           near_duplicates=len(base_dups))
    ours_removed = {int(d) & 0xFFFFFFFF for d in result.near}

    # ---- quality: heuristic annotation, embedding, forest prediction ------------------------------------
    sample = texts[:300]
    t = time.perf_counter()
    anns = HeuristicAnnotator().annotate(sample, [])
    record("annotate (heuristic)", len(sample), time.perf_counter() - t, sum(map(len, sample)) / 1e6)
    emb = HashedEmbedder(cfg.embed_features)
    t = time.perf_counter()
    feats = emb.embed(texts)
    record("embed (hashed)", len(texts), time.perf_counter() - t, mb)
    from sklearn.ensemble import RandomForestClassifier

    labels = np.array([1 if (a.score or 0) >= cfg.label_threshold else 0 for a in anns])
    t = time.perf_counter()
    rf = RandomForestClassifier(cfg.rf_trees, class_weight="balanced", random_state=0, n_jobs=1)
    rf.fit(feats[: len(sample)], labels)
    record("classifier fit (300 annotations)", len(sample), time.perf_counter() - t, 0.0)
    t = time.perf_counter()
    rf.predict_proba(feats)
    record("classifier predict", len(texts), time.perf_counter() - t, mb)

    # ---- decontamination -----------------------------------------------------------------------------
    t = time.perf_counter()
    checker = decontaminator(args.mbpp, cfg.ngram_size, cfg.ngram_threshold, cfg.ast_threshold, cfg.ast_min_nodes)
    t_build = time.perf_counter() - t
    t = time.perf_counter()
    hits = sum(1 for x in texts if checker.check(x))
    record("decontaminate (HumanEval" + (" + MBPP)" if args.mbpp else ")"), len(texts), time.perf_counter() - t,
           mb, contaminated=hits, index_build_s=round(t_build, 3))

    summary = {"corpus": f"stdlib sample: {len(docs)} files, {sum(len(d.text) for d in docs) / 1e6:.1f} MB",
               "near_dedup_speedup_vs_datasketch": round(t_base / t_ours, 2),
               "near_dedup_agreement": {"ours": len(ours_removed), "datasketch": len(base_dups),
                                        "both": len(ours_removed & base_dups)},
               "rows": rows}
    width = max(len(r["step"]) for r in rows)
    print(f"{'step':<{width}}  {'docs':>6}  {'seconds':>8}  {'docs/s':>9}  {'MB/s':>6}")
    for r in rows:
        print(f"{r['step']:<{width}}  {r['docs']:>6}  {r['seconds']:>8.3f}  {r['docs_per_s']:>9}  "
              f"{r['MB_per_s'] if r['MB_per_s'] is not None else '':>6}")
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
