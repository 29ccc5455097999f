"""Pack throughput against the fastest raw tokenizer call, on the same text, in the same run.

    python bench/bench_pack.py [--source python:stdlib] [--repeats 3]

Pack is timed end to end (read files, tokenize the source shards in parallel, split, shuffle, cut rows,
write Parquet shards to a fresh local store); the baselines only tokenize texts already in memory, in one
call over the whole corpus: `encode_batch` and `encode_batch_fast` (no offsets; the call pack itself
uses, so the baseline to beat). Prints tokens/s of each and the ratios (target: pack / encode_batch_fast
>= 1.0).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from primer.config import SourceSpec, StoreConfig, TokenizerConfig, load_config  # noqa: E402
from primer.documents import DropCounter  # noqa: E402
from primer.store import open_store  # noqa: E402
from tasks.pack import pack_documents  # noqa: E402
from tasks.sources import read_documents, resolve_source  # noqa: E402
from tasks.tokenizer import prepare_tokenizer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", default="python:stdlib")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

    cfg = load_config("tiny")
    src = resolve_source(SourceSpec(uri=args.source))
    texts = [d.text for d in read_documents(src, DropCounter())]
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(StoreConfig(root=f"{tmp}/store"))
        tok_cfg = TokenizerConfig(vocab_size=cfg.tokenizer.vocab_size, train_max_bytes=cfg.tokenizer.train_max_bytes)
        tokenizer, ref = prepare_tokenizer(store, tok_cfg, lambda: texts, [src.fingerprint], 0)
        n_tokens = sum(len(e.ids) for e in tokenizer.encode_batch_fast(texts))  # warm-up + token count
        print(f"corpus: {len(texts)} documents, {sum(map(len, texts)) / 1e6:.1f} M chars, {n_tokens / 1e6:.2f} M tokens")

        base, base_fast, packed = [], [], []
        for r in range(args.repeats):
            t = time.perf_counter()
            tokenizer.encode_batch(texts)
            base.append(n_tokens / (time.perf_counter() - t))
            t = time.perf_counter()
            tokenizer.encode_batch_fast(texts)
            base_fast.append(n_tokens / (time.perf_counter() - t))
            # a fresh seed each repeat -> a fresh content key -> no reuse of the previous repeat's output
            pcfg = load_config("tiny", {"pack.seed": 1000 + r}).pack
            t = time.perf_counter()
            manifest = pack_documents(store, pcfg, tokenizer, ref, [src])
            packed.append(n_tokens / (time.perf_counter() - t))
            assert not manifest["reused"]

    b, bf, p = statistics.median(base), statistics.median(base_fast), statistics.median(packed)
    print(f"encode_batch       {b / 1e6:7.3f} M tok/s")
    print(f"encode_batch_fast  {bf / 1e6:7.3f} M tok/s")
    print(f"pack (end to end)  {p / 1e6:7.3f} M tok/s")
    print(f"ratio pack / encode_batch      = {p / b:.3f}")
    print(f"ratio pack / encode_batch_fast = {p / bf:.3f}  (target >= 1.0)")


if __name__ == "__main__":
    main()
