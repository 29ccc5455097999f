"""Memory of curate's dedup units at growing corpus sizes (issue 13: the cluster step holds duplicate edges,
not documents).

Synthetic signatures stand in for a large corpus (texts would take hours to hash on a small machine): N
random 128-bin MinHash signatures in shards of `--shard-docs`, of which `--dups` are planted near copies
(a random 10% of an earlier document's bins changed, estimated Jaccard ~0.9) and as many are planted
exact copies. The work area is written as `filter_shard` writes it (signatures, bucket records, id tables);
then the real `dedup_bucket` (per partition) and `dedup_cluster` units run on a local store, each measured
by `tracemalloc` (numpy's allocations included). With the same number of duplicates at every N, the
cluster's peak stays flat while a partition's grows with N / K.

    python bench/bench_curate_dedup.py [--sizes 100000 400000] [--buckets 16] [--dups 2000]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from primer.config import StoreConfig  # noqa: E402
from primer.settings.curate import CurateConfig  # noqa: E402
from primer.store import open_store  # noqa: E402
from tasks.curate import dedup as dd  # noqa: E402
from tasks.curate import stages  # noqa: E402
from tasks.curate.work import Work, write_table_bytes  # noqa: E402


def write_work_area(store, key: str, cfg: CurateConfig, n: int, shard_docs: int, dups: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    hasher = dd.curate_hasher(cfg.num_perm, cfg.shingle_size, cfg.near_threshold, cfg.seed)
    sig = rng.integers(0, 2**32, size=(n, cfg.num_perm), dtype=np.uint32)
    exact = rng.integers(0, 2**63, size=n, dtype=np.uint64)
    src = rng.choice(n // 2, size=2 * dups, replace=False)
    dst = n // 2 + rng.choice(n - n // 2, size=2 * dups, replace=False)
    near_src, near_dst, ex_src, ex_dst = src[:dups], dst[:dups], src[dups:], dst[dups:]
    sig[near_dst] = sig[near_src]
    changed = rng.random((dups, cfg.num_perm)) < 0.1
    sig[near_dst] = np.where(changed, rng.integers(0, 2**32, size=(dups, cfg.num_perm), dtype=np.uint32),
                             sig[near_dst])
    sig[ex_dst], exact[ex_dst] = sig[ex_src], exact[ex_src]
    work = Work(store, key)
    shards = []
    for s, lo in enumerate(range(0, n, shard_docs)):
        rows = slice(lo, min(n, lo + shard_docs))
        part = dd.Signatures(np.arange(rows.stop - lo, dtype=np.int64), exact[rows], hasher.band_hashes(sig[rows]),
                             sig[rows])
        buf = io.BytesIO()
        np.save(buf, part.minhash)
        store.write_bytes(work.shard(s, "minhash.npy"), buf.getvalue())
        for k, blob in enumerate(dd.bucket_records(s, part, cfg.dedup_buckets, True)):
            store.write_bytes(work.shard(s, f"bucket-{k:04d}.npz"), blob)
        ids = [f"f{i}.py" for i in range(lo, rows.stop)]
        store.write_bytes(work.shard(s, "ids.arrow"),
                          write_table_bytes(pa.table({"id": ids, "source": ["synthetic"] * len(ids)})))
        shards.append(s)
    return shards


def measured(fn):
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, peak / 1e6, seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 400_000])
    ap.add_argument("--buckets", type=int, default=16)
    ap.add_argument("--dups", type=int, default=2000, help="planted near copies (and as many exact copies)")
    ap.add_argument("--shard-docs", type=int, default=10_000)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    # Planted signatures have no texts behind them, so the estimate decides every pair (near copies sit at ~0.9,
    # far from the threshold, where the exact check would not look anyway).
    cfg = CurateConfig(dedup_buckets=args.buckets, near_exact_margin=0.0)
    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="primer-dedup-bench-") as tmp:
            store_cfg = StoreConfig(root=tmp)
            store = open_store(store_cfg)
            key = f"bench{n}"
            shards = write_work_area(store, key, cfg, n, args.shard_docs, args.dups, seed=n)
            peaks, secs, stats = [], 0.0, []
            for k in range(args.buckets):
                st, mb, s = measured(lambda: stages.dedup_bucket(k, shards, cfg, key, store_cfg))
                peaks.append(mb)
                secs += s
                stats.append(st)
            summary, c_mb, c_s = measured(lambda: stages.dedup_cluster(shards, cfg, key, store_cfg))
            edges = sum(st["exact_edges"] + st["near_confirmed"] for st in stats)
            rows.append({"docs": n, "shards": len(shards), "buckets": args.buckets,
                         "bucket_peak_mb_max": round(max(peaks), 1), "bucket_s_total": round(secs, 2),
                         "pairs_checked": sum(st["near_candidates"] for st in stats), "edges_to_cluster": edges,
                         "cluster_peak_mb": round(c_mb, 1), "cluster_s": round(c_s, 2),
                         "exact_duplicates": summary["exact_duplicates"],
                         "near_duplicates": summary["near_duplicates"],
                         "signature_mb_all_docs": round(n * cfg.num_perm * 4 / 1e6, 1)})
            print(json.dumps(rows[-1]))
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        print(f"docs x{b['docs'] / a['docs']:.1f}: partition peak x{b['bucket_peak_mb_max'] / a['bucket_peak_mb_max']:.2f}, "
              f"cluster peak x{b['cluster_peak_mb'] / a['cluster_peak_mb']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
