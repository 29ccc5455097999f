"""Seeding textbook prompts with real code from the curated set (cosmopedia's method).

`synth.seed_source` names a curate output (a store URI, or a ref such as `curate/<key>`); it is read only
through its manifest (dataset `documents`, via tasks/sources.py, as pack reads it). A `synth.seed_fraction`
share of the textbook requests embed a short extract of one curated document each and ask for a textbook
section teaching the concepts that code uses; the rest are topic x audience x style prompts as before.

Which documents: the `k` with the smallest sha256 of (synth.seed, text) — a deterministic choice by content,
independent of file order, streamed with a bounded heap (memory: k extracts, never the corpus). Which part:
a document longer than `synth.seed_extract_chars` is cut to whole lines from a top-level `def`/`class`
chosen by the same hash, at most that many characters. The extract is in the prompt, so it is in the
request key: a resumed run builds the same prompts and the ledger answers them; distinct extracts only, so
no exact-repeat prompt is ever planned.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
import re
from typing import Any

import pyarrow.parquet as pq

from primer.config import PrimerConfig, SourceSpec
from primer.documents import DropCounter
from primer.errors import InputError, StoreError
from primer.store import filesystem_for, open_store
from tasks.sources import ResolvedSource, read_documents, resolve_source
from tasks.synth.prompts import Topic

SEED_DATASET = "documents"            # the curate output's dataset of curated documents
SEED_CHAPTER = "seeded from curated code"
_TOP_LEVEL = re.compile(r"^(?:async\s+def|def|class)\s|^@")


def resolve_seed_source(cfg: PrimerConfig) -> dict[str, Any] | None:
    """The seed source's files (from its manifest) and fingerprint, or None when nothing is seeded.
    A bad `synth.seed_source` (not found, not a stage output, no `documents` dataset, skipped) is one
    `InputError` line naming the setting."""
    s = cfg.synth
    if s.seed_fraction <= 0 or not s.seed_source:
        return None
    fix = "set it to a curate output's URI or store ref (curate/<key>), or set synth.seed_fraction=0"
    try:
        open_store(cfg.store).read_output(s.seed_source, stage="curate")   # a finished curate output?
        src = resolve_source(SourceSpec(uri=s.seed_source, dataset=SEED_DATASET), cfg.store,
                             setting="synth.seed_source")
    except (InputError, StoreError) as e:
        reason = str(e).splitlines()[0].replace(f"synth.seed_source[0] ({s.seed_source}): ", "")
        raise InputError(f"synth.seed_source={s.seed_source!r}: not a usable curate output ({reason}); {fix}") \
            from None
    uri = src.base if src.protocol == "file" else f"{src.protocol}://{src.base}"
    fs, _ = filesystem_for(uri, cfg.store)
    documents = sum(_parquet_rows(fs, f) for f in src.files) if src.format == "parquet" else None
    return {"seed_source": s.seed_source, "uri": uri, "dataset": SEED_DATASET, "fingerprint": src.fingerprint,
            "documents": documents, "source": src.to_dict()}


def _parquet_rows(fs, path: str) -> int:
    """Rows of one Parquet file, from its footer."""
    with fs.open(path, "rb") as f:
        return pq.ParquetFile(f).metadata.num_rows


def seeded_count(requests: int, fraction: float, documents: int | None = None) -> int:
    """Seeded requests among `requests` textbook requests (round half up), at most one per document."""
    k = math.floor(requests * fraction + 0.5) if fraction > 0 else 0
    return min(k, documents) if documents is not None else k


def _rank(seed: int, text: str) -> str:
    return hashlib.sha256(f"{seed}\0{text}".encode("utf-8", "surrogatepass")).hexdigest()


def extract(text: str, max_chars: int, rank: str) -> str:
    """At most `max_chars` characters of whole lines of `text`: all of it when it fits, else from a
    top-level definition chosen by `rank` (a hex hash) to the end of the last whole definition that fits
    (or the last line that fits)."""
    text = text.replace("\r\n", "\n").strip("\n")
    if len(text) <= max_chars:
        return text
    lines = text.split("\n")
    starts = [i for i, line in enumerate(lines) if _TOP_LEVEL.match(line)] or [0]
    start = starts[int(rank[:12], 16) % len(starts)]
    out, size, cut = [], 0, False
    for line in lines[start:]:
        if size + len(line) + (1 if out else 0) > max_chars:
            cut = True
            break
        size += len(line) + (1 if out else 0)
        out.append(line)
    if not out:   # one line longer than the limit
        return lines[start][:max_chars]
    if cut:   # end before the definition the limit cut into, unless that leaves less than half
        last = max((j for j, line in enumerate(out) if j and _TOP_LEVEL.match(line)), default=0)
        if last and len("\n".join(out[:last])) >= max_chars // 2:
            out = out[:last]
    return "\n".join(out).rstrip()


def select_extracts(cfg: PrimerConfig, seed: dict[str, Any], k: int) -> list[dict[str, str]]:
    """Up to `k` distinct extracts [{id, sha256, text}] of the seed source's documents, in rank order."""
    if k <= 0:
        return []
    src = ResolvedSource.from_dict(seed["source"])
    limit, want = cfg.synth.seed_extract_chars, k + k // 8 + 4   # slack for documents whose extracts repeat
    heap: list[tuple[str, str, str]] = []   # max-heap of the `want` smallest ranks: (negated rank, id, extract)
    ranks: set[str] = set()
    for doc in read_documents(src, DropCounter(), cfg.store):
        r = _rank(cfg.synth.seed, doc.text)
        if r in ranks or (len(heap) >= want and r >= _neg(heap[0][0])):
            continue
        ex = extract(doc.text, limit, r)
        if not ex.strip():
            continue
        ranks.add(r)
        heapq.heappush(heap, (_neg(r), doc.id, ex))
        if len(heap) > want:
            ranks.discard(_neg(heapq.heappop(heap)[0]))
    out, seen = [], set()
    for neg, doc_id, ex in sorted(heap, reverse=True):   # smallest rank first
        if ex not in seen:
            seen.add(ex)
            out.append({"id": doc_id, "sha256": _neg(neg), "text": ex})
    return out[:k]


def _neg(hexdigest: str) -> str:
    """The hex string whose order is the reverse (heapq is a min-heap)."""
    return hexdigest.translate(_NEG)


_NEG = str.maketrans("0123456789abcdef", "fedcba9876543210")


def seeded_items(extracts: list[dict[str, str]], audiences: list[str], styles: list[str],
                 seed: int) -> list[dict[str, Any]]:
    """One textbook plan item per extract; audience and style chosen by the extract's rank."""
    audiences, styles = audiences or ["a student"], styles or ["clear"]
    items = []
    for ex in extracts:
        rng = random.Random(f"{seed}:seed:{ex['sha256']}")
        items.append({"topic": Topic(SEED_CHAPTER, f"code extract {ex['id']}"), "audience": rng.choice(audiences),
                      "style": rng.choice(styles), "sample_index": 0, "seed": ex})
    return items


def interleave(plain: list[dict[str, Any]], seeded: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The seeded items spread evenly through the plain ones (both keep their order)."""
    n = len(plain) + len(seeded)
    at = {math.floor(i * n / len(seeded)) for i in range(len(seeded))} if seeded else set()
    plain_it, seeded_it = iter(plain), iter(seeded)
    return [next(seeded_it) if j in at else next(plain_it) for j in range(n)]
