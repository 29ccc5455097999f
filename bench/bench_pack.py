"""Pack end to end against the fastest raw tokenizer call, on the same documents, in the same run.

    python bench/bench_pack.py [--source python:stdlib] [--repeats 3] [--max-files N]

What is fair. The baseline is what a user who only wants the token stream would write with the fastest
call `tokenizers` has, `encode_batch_fast` (no offsets; the call pack itself uses): the same documents,
already in memory, in batches of the same `pack.batch_docs`, with `encode_special_tokens` on as in pack,
on the same process-wide Rust thread pool (TOKENIZERS_PARALLELISM=true, all cores), plus the minimal work
that gives the same token stream: each batch's ids as one int32 array with an EOS after each document
(pack's own `eos_joined`, so both sides convert ids alike; the baseline's stream is checked to hold
as many tokens as pack's). Pack is timed end to end on top of
that: read the files, tokenize the source shards (on its usual `threads` shard threads, sharing that
Rust pool), drop too-large/too-long documents, each document's token entropy, split, weight, shuffle, cut
rows, write zstd Parquet shards to a fresh local store (a fresh seed each run: never a reuse) and hash
them. Pack is at 1.0 when everything beyond the tokenizer costs nothing or hides behind it.

The two are timed alternately (baseline first on even runs, pack first on odd runs, so drift in the
machine's load hits both), and each run prints its wall-clock ratio, its CPU-seconds ratio (all threads
of this process: the work each side did, which other processes on a shared machine disturb less) and
the load average. The verdict is the median of the per-run wall-clock ratios (target >= 1.0).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from primer.config import SourceSpec, StoreConfig, TokenizerConfig, load_config  # noqa: E402
from primer.documents import DropCounter  # noqa: E402
from primer.store import open_store  # noqa: E402
from tasks.pack import pack_documents  # noqa: E402
from tasks.pack.encode import eos_joined  # noqa: E402
from tasks.sources import read_documents, resolve_source  # noqa: E402
from tasks.tokenizer import prepare_tokenizer  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def baseline(tokenizer, texts: list[str], batch_docs: int, eos_id: int) -> np.ndarray:
    """encode_batch_fast over `texts` in batches, each batch's ids as one int32 array, EOS after each."""
    tokenizer.encode_special_tokens = True
    parts = []
    for i in range(0, len(texts), batch_docs):
        encodings = tokenizer.encode_batch_fast(texts[i:i + batch_docs])
        parts.append(eos_joined(encodings, np.fromiter(map(len, encodings), np.int64, len(encodings)) + 1, eos_id)[0])
    return np.concatenate(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", default="python:stdlib")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-files", type=int, default=0, help="only the source's first N files (quick runs)")
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

    cfg = load_config("tiny")
    src = resolve_source(SourceSpec(uri=args.source))
    if args.max_files:
        src = dataclasses.replace(src, files=src.files[:args.max_files])
    # The baseline gets exactly the documents pack keeps (the tiny config's limits drop none of these).
    texts = [d.text for d in read_documents(src, DropCounter())]
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(StoreConfig(root=f"{tmp}/store"))
        tok_cfg = TokenizerConfig(vocab_size=cfg.tokenizer.vocab_size, train_max_bytes=cfg.tokenizer.train_max_bytes)
        tokenizer, ref = prepare_tokenizer(store, tok_cfg, lambda: texts, [src.fingerprint], 0)
        batch_docs = cfg.pack.batch_docs
        # warm-up of both sides (imports, the tokenizer's first calls), untimed
        n_tokens = baseline(tokenizer, texts, batch_docs, ref.eos_id).size
        warm = dataclasses.replace(src, files=src.files[:20])
        pack_documents(store, load_config("tiny", {"pack.seed": 999}).pack, tokenizer, ref, [warm])
        print(f"corpus: {len(texts)} documents, {sum(map(len, texts)) / 1e6:.1f} M chars, "
              f"{n_tokens / 1e6:.2f} M tokens (EOS included), batch_docs {batch_docs}")

        ratios, cpu_ratios = [], []
        for r in range(args.repeats):
            load = os.getloadavg()[0]
            # a fresh seed each run -> a fresh content key -> no reuse of the previous run's output
            pcfg = load_config("tiny", {"pack.seed": 1000 + r}).pack
            timed = {}
            for side in (("baseline", "pack") if r % 2 == 0 else ("pack", "baseline")):
                t, c = time.perf_counter(), cpu_seconds()
                if side == "baseline":
                    size = baseline(tokenizer, texts, batch_docs, ref.eos_id).size
                else:
                    manifest = pack_documents(store, pcfg, tokenizer, ref, [src])
                    assert not manifest["reused"]
                    size = sum(s["tokens"] for s in manifest["sources"])
                timed[side] = (time.perf_counter() - t, cpu_seconds() - c)
                assert size == n_tokens, f"{side}: {size} tokens, expected {n_tokens}"
            (tb, cb), (tp, cp) = timed["baseline"], timed["pack"]
            ratios.append(tb / tp)
            cpu_ratios.append(cb / cp)
            print(f"run {r}: load {load:4.1f}  encode_batch_fast {n_tokens / tb / 1e6:6.3f} M tok/s ({tb:6.2f} s, "
                  f"cpu {cb:6.2f} s)  pack {n_tokens / tp / 1e6:6.3f} M tok/s ({tp:6.2f} s, cpu {cp:6.2f} s)  "
                  f"ratio {ratios[-1]:.3f}  cpu ratio {cpu_ratios[-1]:.3f}", flush=True)
            print(f"        pack timing_s {manifest['timing_s']}", flush=True)

    print(f"median ratio pack / encode_batch_fast = {statistics.median(ratios):.3f}  (target >= 1.0; "
          f"cpu-seconds ratio {statistics.median(cpu_ratios):.3f}; load now {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
