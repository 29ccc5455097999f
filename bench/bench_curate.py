"""Benchmark the curate steps on this Python's standard library (documents/s per step), each new step against
a baseline measured in the same run on the same documents:

* syntax filter: `PythonSyntaxFilter` (parser + symbol table, no AST objects) vs `ast.parse` (the filter
  before issue 13, bench/curate_baseline.py);
* near-dedup: ours (one-permutation MinHash, partitioned LSH with each partition's pairs verified there,
  by exact Jaccard near the threshold, connected components over the verified pairs) vs datasketch
  `MinHash` + `MinHashLSH`, with the duplicates each finds;
* decontamination: `Decontaminator` vs the checker before issue 13 (bench/curate_baseline.py), with the
  documents each flags.

    python bench/bench_curate.py [--max-docs 3000] [--json out.json]

Single process, no Prefect: the numbers are per-core throughput of each step's code. Each compared pair runs
twice, alternately, and keeps each side's fastest run (a shared machine's load drifts between runs). MBPP is found by the
same lookup the stages use (curate.mbpp_path / $PRIMER_MBPP_PATH / ../shared); without it, HumanEval only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import curate_baseline as base  # noqa: E402
from primer.config import SourceSpec  # noqa: E402
from primer.documents import DropCounter  # noqa: E402
from primer.settings.curate import CurateConfig  # noqa: E402
from tasks.curate import dedup as dd  # noqa: E402
from tasks.curate.decontam import Decontaminator, load_humaneval, load_mbpp  # noqa: E402
from tasks.curate.embed import HashedEmbedder  # noqa: E402
from tasks.curate.filters import FilterChain, default_filters  # noqa: E402
from tasks.curate.heuristic import HeuristicAnnotator  # noqa: E402
from primer.minhash import hash64, tokens  # noqa: E402
from tasks.sources import read_documents, resolve_source  # noqa: E402


def rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else float("inf")


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def race(new_fn, old_fn, rounds: int = 2):
    """Time new and old alternately `rounds` times and keep each one's fastest run: on a shared machine the
    load drifts, and alternating + min keeps the ratio about the code, not about the neighbours."""
    best_new = best_old = float("inf")
    out_new = out_old = None
    for _ in range(rounds):
        out_new, t = timed(new_fn)
        best_new = min(best_new, t)
        out_old, t = timed(old_fn)
        best_old = min(best_old, t)
    return out_new, best_new, out_old, best_old


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-docs", type=int, default=3000, help="hash-sampled standard-library files (0 = all)")
    ap.add_argument("--json", default="", help="also write the results here")
    ap.add_argument("--mbpp", default="", help="MBPP jsonl; default: the stages' lookup")
    args = ap.parse_args()
    from primer.scoring.data_files import try_locate_mbpp

    mbpp, _ = try_locate_mbpp(args.mbpp, download=False)
    cfg = CurateConfig()
    rows: list[dict] = []
    ratios: dict[str, float] = {}

    def record(step: str, n: int, seconds: float, mb: float, **extra) -> None:
        rows.append({"step": step, "docs": n, "seconds": round(seconds, 3), "docs_per_s": rate(n, seconds),
                     "MB_per_s": round(mb / seconds, 2) if seconds > 0 else None, **extra})

    src = resolve_source(SourceSpec(uri="python:stdlib"))
    files = src.files
    if args.max_docs and len(files) > args.max_docs:
        chosen = set(sorted(files, key=lambda f: hash64(f"{cfg.seed}:{f[len(src.base):]}"))[: args.max_docs])
        files = [f for f in files if f in chosen]
    src.files = files
    docs, t = timed(lambda: [d for d in read_documents(src, DropCounter()) if len(d.text) <= cfg.max_bytes])
    mb = sum(len(d.text) for d in docs) / 1e6
    record("read", len(docs), t, mb)

    chain = FilterChain(default_filters(cfg), DropCounter())
    survivors = list(docs)
    def old_syntax(d):
        try:
            base.parse_python(d.text)
            return True
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return False

    for f in chain.filters:  # each filter alone, on everything that reached it
        fmb = sum(len(d.text) for d in survivors) / 1e6
        if f.name == "syntax":
            nxt, t, old, t_old = race(lambda: [d for d in survivors if f.filter(d)[0]],
                                      lambda: [d for d in survivors if old_syntax(d)])
            record(f"filter {f.name}", len(survivors), t, fmb, dropped=len(survivors) - len(nxt))
            record("filter syntax (baseline: ast.parse)", len(survivors), t_old, fmb, dropped=len(survivors) - len(old))
            ratios["syntax_filter_vs_ast_parse"] = round(t_old / t, 2)
        else:
            nxt, t = timed(lambda: [d for d in survivors if f.filter(d)[0]])
            record(f"filter {f.name}", len(survivors), t, fmb, dropped=len(survivors) - len(nxt))
        survivors = nxt
    texts = [d.text for d in survivors]
    mb = sum(map(len, texts)) / 1e6

    exact, t = timed(lambda: [dd.exact_hash(x) for x in texts])
    record("exact hash", len(texts), t, mb, duplicates=len(exact) - len(set(exact)))

    # ---- near-dedup: ours (signatures -> partitions -> edges -> verified clusters) vs datasketch -----------
    hasher = dd.curate_hasher(cfg.num_perm, cfg.shingle_size, cfg.near_threshold, cfg.seed)
    from datasketch import MinHash, MinHashLSH

    def ours():
        sigs = dd.build_signatures(texts, hasher, True)
        parts = dd.bucket_records(0, sigs, cfg.dedup_buckets, False)
        edges = [dd.verify_edges(dd.bucket_edges([dd.from_npz(p)]),
                                 lambda ds: sigs.minhash[np.asarray(ds) & 0xFFFFFFFF], cfg.near_threshold, True,
                                 lambda ds: [hasher.shingles(texts[d & 0xFFFFFFFF]) for d in ds.tolist()],
                                 cfg.near_exact_margin)
                 for p in parts]
        return dd.cluster(edges, cfg.near_threshold)

    def datasketch():  # MinHash.update_batch + MinHashLSH insert/query on the same shingles
        lsh = MinHashLSH(threshold=cfg.near_threshold, num_perm=cfg.num_perm)
        dups = set()
        for i, x in enumerate(texts):
            toks = tokens(x)
            n = cfg.shingle_size
            sh = {" ".join(toks[j:j + n]).encode() for j in range(max(1, len(toks) - n + 1))}
            m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed)
            m.update_batch(list(sh))
            if lsh.query(m):
                dups.add(i)
            lsh.insert(str(i), m)
        return dups

    result, t_ours, base_dups, t_base = race(ours, datasketch)
    record("near-dedup (primer: one-permutation MinHash + partitioned LSH)", len(texts), t_ours, mb,
           near_duplicates=len(result.near_removed), bands=f"{hasher.bands}x{hasher.rows}",
           pairs_checked=result.candidates, pairs_exact_checked=result.exact_checked)
    record("near-dedup (baseline: datasketch MinHash + MinHashLSH)", len(texts), t_base, mb,
           near_duplicates=len(base_dups))
    ours_removed = {int(d) & 0xFFFFFFFF for d in result.near_removed.tolist()}
    ratios["near_dedup_vs_datasketch"] = round(t_base / t_ours, 2)
    # Where the two disagree, the truth: each such document's highest exact shingle-set Jaccard with another
    # document (datasketch reports LSH candidates unverified; ours keeps pairs whose Jaccard passes: the
    # estimate's, or the exact one where the estimate is within near_exact_margin of the threshold).
    shingles = {}

    def shingle_set(i: int) -> set:
        if i not in shingles:
            toks, n = tokens(texts[i]), cfg.shingle_size
            shingles[i] = {" ".join(toks[j:j + n]) for j in range(max(1, len(toks) - n + 1))}
        return shingles[i]

    def best_jaccard(i: int) -> float:
        a = shingle_set(i)
        return max((len(a & shingle_set(j)) / len(a | shingle_set(j)) for j in range(len(texts)) if j != i),
                   default=0.0)

    disagreement = {name: {i: round(best_jaccard(i), 3) for i in sorted(only)}
                    for name, only in (("datasketch_only", base_dups - ours_removed),
                                       ("ours_only", ours_removed - base_dups))}

    # ---- quality: heuristic annotation, embedding, forest prediction ------------------------------------
    sample = texts[:300]
    anns, t = timed(lambda: HeuristicAnnotator().annotate(sample, []))
    record("annotate (heuristic rubric)", len(sample), t, sum(map(len, sample)) / 1e6)
    emb = HashedEmbedder(cfg.embed_features)
    feats, t = timed(lambda: emb.embed(texts))
    record("embed (hashed)", len(texts), t, mb)
    from sklearn.ensemble import RandomForestClassifier

    labels = np.array([1 if (a.score or 0) >= cfg.label_threshold else 0 for a in anns])
    rf = RandomForestClassifier(cfg.rf_trees, class_weight="balanced", random_state=0, n_jobs=1)
    _, t = timed(lambda: rf.fit(feats[: len(sample)], labels))
    record("classifier fit (300 annotations)", len(sample), t, 0.0, educational=int(labels.sum()))
    _, t = timed(lambda: rf.predict_proba(feats))
    record("classifier predict", len(texts), t, mb)

    # ---- decontamination: new checker vs the one before, same items, same documents ---------------------
    items = load_humaneval() + (load_mbpp(mbpp) if mbpp else [])
    what = "HumanEval" + (" + MBPP" if mbpp else "")
    checker, t_build = timed(lambda: Decontaminator(items, cfg.ngram_size, cfg.ngram_threshold, cfg.ast_threshold,
                                                    cfg.ast_min_nodes))
    old_checker, t_old_build = timed(lambda: base.Decontaminator(items, cfg.ngram_size, cfg.ngram_threshold,
                                                                 cfg.ast_threshold, cfg.ast_min_nodes))
    new_hits, t, old_hits, t_old = race(lambda: [i for i, x in enumerate(texts) if checker.check(x)],
                                        lambda: [i for i, x in enumerate(texts) if old_checker.check(x)])
    record(f"decontaminate ({what})", len(texts), t, mb, contaminated=len(new_hits), index_build_s=round(t_build, 3))
    record(f"decontaminate (baseline: before issue 13, {what})", len(texts), t_old, mb, contaminated=len(old_hits),
           index_build_s=round(t_old_build, 3))
    ratios["decontamination_vs_before"] = round(t_old / t, 2)

    summary = {"corpus": f"stdlib sample: {len(docs)} files, {sum(len(d.text) for d in docs) / 1e6:.1f} MB",
               "ratios": ratios,
               "near_dedup_agreement": {"ours": len(ours_removed), "datasketch": len(base_dups),
                                        "both": len(ours_removed & base_dups),
                                        "threshold": cfg.near_threshold,
                                        "best_exact_jaccard_where_they_differ": disagreement},
               "decontamination_agreement": {"new": len(new_hits), "before": len(old_hits),
                                             "both": len(set(new_hits) & set(old_hits))},
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
