"""Pack end to end against the fastest raw tokenizer call, on the same documents, in the same run.

    python bench/bench_pack.py [--source python:stdlib] [--repeats 3] [--max-files N] [--threads N]
                               [--word-cache auto|on|off]

What is fair. The baseline is what a user who only wants the token stream would write with the fastest
call `tokenizers` has, `encode_batch_fast` (no offsets): the same documents, already in memory, in batches
of the same `pack.batch_docs`, with `encode_special_tokens` on as in pack, on the same process-wide Rust
thread pool (TOKENIZERS_PARALLELISM=true, all cores), plus the minimal work that gives the same token
stream: each batch's ids as one int32 array with an EOS after each document (each baseline's stream is
checked to hold as many tokens as pack's; tests/test_pack_word_cache.py checks the ids are the same).
Pack is timed end to end on top of that: read the files, tokenize the source shards (on its usual
`threads` shard threads), drop too-large/too-long documents, each document's token entropy, split,
weight, shuffle, cut rows, write zstd Parquet shards to a fresh local store (a fresh seed each run: never a
reuse) and hash them.

Pack encodes ASCII text through its word cache (tasks/pack/word_cache.py, `pack.word_cache`): each
distinct piece goes through the tokenizer once. The cache is emptied before every pack run, so each run
pays for its new pieces as a fresh process does; `--word-cache off` times pack with the tokenizer alone.

Pack's shards (`pack.shard_bytes` of source files each) also cut its batches: a batch never spans two
shards, so pack's batches are smaller than `batch_docs` documents over the whole corpus. A second baseline,
"pack's batches", encodes exactly pack's batches (shard by shard, `batch_docs` at most) one after another
in one thread. The target (>= 1.0) is on the first, the raw call as a user writes it.

The sides are timed in turn, their order rotated each run (so drift in the machine's load hits all),
and each run prints its wall-clock ratios, its CPU-seconds ratios (all threads of this process: the
work each side did, which other processes on a shared machine disturb less) and the load average. The
verdict is the median of the per-run wall-clock ratios.
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
from itertools import chain
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from primer.config import SourceSpec, StoreConfig, TokenizerConfig, load_config  # noqa: E402
from primer.documents import DropCounter  # noqa: E402
from primer.store import open_store  # noqa: E402
from tasks.pack import pack_documents  # noqa: E402
from tasks.pack.encode import plan_shards  # noqa: E402
from tasks.pack.word_cache import clear_word_caches  # noqa: E402
from tasks.sources import read_documents, resolve_source  # noqa: E402
from tasks.tokenizer import prepare_tokenizer  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def baseline(tokenizer, batches: list[list[str]], eos_id: int) -> np.ndarray:
    """encode_batch_fast over each batch, each batch's ids as one int32 array with EOS after each document."""
    tokenizer.encode_special_tokens = True
    parts = []
    for batch in batches:
        encodings = tokenizer.encode_batch_fast(batch)
        n = np.fromiter(map(len, encodings), np.int64, len(encodings)) + 1  # + EOS
        body = np.fromiter(chain.from_iterable(e.ids for e in encodings), np.int32, int(n.sum()) - len(n))
        parts.append(np.insert(body, np.cumsum(n - 1), eos_id))
    return np.concatenate(parts)


def chunks(texts: list[str], size: int) -> list[list[str]]:
    return [texts[i:i + size] for i in range(0, len(texts), size)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", default="python:stdlib")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-files", type=int, default=0, help="only the source's first N files (quick runs)")
    ap.add_argument("--threads", type=int, default=0, help="pack's shard threads (default: pack's own)")
    ap.add_argument("--word-cache", default="auto", choices=("auto", "on", "off"), help="pack.word_cache")
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
        sides = {
            "encode_batch_fast": chunks(texts, batch_docs),
            "pack's batches": [batch for plan in plan_shards([src], cfg.pack) for batch in chunks(
                [d.text for d in read_documents(plan.source, DropCounter())], batch_docs)],
        }
        # warm-up of every side (imports, the tokenizer's first calls), untimed
        n_tokens = baseline(tokenizer, sides["encode_batch_fast"], ref.eos_id).size
        warm = dataclasses.replace(src, files=src.files[:20])
        warm_cfg = load_config("tiny", {"pack.seed": 999, "pack.word_cache": args.word_cache}).pack
        pack_documents(store, warm_cfg, tokenizer, ref, [warm])
        print(f"corpus: {len(texts)} documents, {sum(map(len, texts)) / 1e6:.1f} M chars, "
              f"{n_tokens / 1e6:.2f} M tokens (EOS included); batches of <= {batch_docs} documents: "
              + ", ".join(f"{name} {len(b)}" for name, b in sides.items()))

        ratios: dict[str, list[float]] = {name: [] for name in sides}
        cpu_ratios: dict[str, list[float]] = {name: [] for name in sides}
        order = ["pack", *sides]
        for r in range(args.repeats):
            load = os.getloadavg()[0]
            # a fresh seed each run -> a fresh content key -> no reuse of the previous run's output
            pcfg = load_config("tiny", {"pack.seed": 1000 + r, "pack.word_cache": args.word_cache}).pack
            timed = {}
            for side in order[r % len(order):] + order[:r % len(order)]:
                t, c = time.perf_counter(), cpu_seconds()
                if side == "pack":
                    clear_word_caches()  # cold, as in a new process: pieces seen in earlier runs cost again
                    manifest = pack_documents(store, pcfg, tokenizer, ref, [src], threads=args.threads)
                    assert not manifest["reused"]
                    size = sum(s["tokens"] for s in manifest["sources"])
                else:
                    size = baseline(tokenizer, sides[side], ref.eos_id).size
                timed[side] = (time.perf_counter() - t, cpu_seconds() - c)
                assert size == n_tokens, f"{side}: {size} tokens, expected {n_tokens}"
            tp, cp = timed["pack"]
            line = [f"run {r}: load {load:4.1f}  pack {n_tokens / tp / 1e6:6.3f} M tok/s ({tp:6.2f} s, cpu {cp:6.2f} s)"]
            for name in sides:
                tb, cb = timed[name]
                ratios[name].append(tb / tp)
                cpu_ratios[name].append(cb / cp)
                line.append(f"{name} {n_tokens / tb / 1e6:6.3f} M tok/s ({tb:6.2f} s, cpu {cb:6.2f} s): "
                            f"ratio {ratios[name][-1]:.3f}, cpu {cpu_ratios[name][-1]:.3f}")
            print("\n    ".join(line), f"\n    pack timing_s {manifest['timing_s']}", flush=True)

    for name in sides:
        print(f"median ratio pack / {name} = {statistics.median(ratios[name]):.3f}  (cpu-seconds "
              f"{statistics.median(cpu_ratios[name]):.3f})" + ("  target >= 1.0" if name == "encode_batch_fast" else ""))
    print(f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
