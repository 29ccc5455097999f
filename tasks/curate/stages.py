"""The curate stage's units of work, free of Prefect (flows/curate.py maps them as tasks).

Work files live under `curate-work/<key>/` on the store (deleted after success unless `keep_work`):

    shards/<s>/kept.arrow, drops.arrow, minhash.npy, bucket-<k>.npz, _SUCCESS.json   (filter_shard)
    dedup/bucket-<k>.npz                                                            (dedup_bucket)
    dedup/removed-<s>.arrow, dedup/_SUCCESS.json                                    (dedup_cluster)
    annotate/_SUCCESS.json                                                          (annotate_sample)
    final/<s>.json                                                                  (finalize_shard)

Every unit writes its files first and its marker (`_SUCCESS.json` / `final/<s>.json`) last, each file
committed atomically, so a re-run skips every finished unit and redoes only unfinished ones.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from primer.config import StoreConfig
from primer.documents import DropCounter
from primer.settings.curate import CurateConfig
from primer.store import ArtifactStore, FileRecord, open_store, sha256_file
from tasks.curate import dedup as dd
from tasks.curate.filters import FilterChain, StepCount, default_filters, nbytes, split_reason
from tasks.curate.text import hash64, sha256_text
from tasks.sources import ResolvedSource, read_documents, resolve_source

log = logging.getLogger("primer.curate")
STAGE_VERSION = 1
DOC_SCHEMA = pa.schema([
    ("id", pa.string()), ("text", pa.string()), ("source", pa.string()), ("quality", pa.float32()),
    ("annotation", pa.float32()), ("bytes", pa.int64()), ("lines", pa.int32()), ("sha256", pa.string()),
])
KEPT_SCHEMA = pa.schema([("id", pa.string()), ("source", pa.string()), ("text", pa.string()),
                         ("bytes", pa.int64()), ("lines", pa.int32()), ("sha256", pa.string())])
EXCLUSION_SCHEMA = pa.schema([
    ("id", pa.string()), ("source", pa.string()), ("reason", pa.string()), ("detail", pa.string()),
    ("duplicate_of", pa.string()), ("bytes", pa.int64()), ("text", pa.string()),
])
CONTAMINATION_SCHEMA = pa.schema([
    ("id", pa.string()), ("source", pa.string()), ("benchmark", pa.string()), ("task_id", pa.string()),
    ("method", pa.string()), ("score", pa.float32()), ("snippet", pa.string()),
])
# Side tables are Parquet with a `.pqt` suffix so that a `format: parquet` read of the output folder
# (which matches *.parquet / *.pq recursively) sees only the curated documents under data/.
SIDE_EXT = ".pqt"


# ------------------------------------------------------------------------------------------ small IO


def shard_name(s: int) -> str:
    return f"{s:05d}"


def write_table_bytes(table: pa.Table, fmt: str = "arrow") -> bytes:
    sink = io.BytesIO()
    if fmt == "arrow":
        with pa.ipc.new_file(sink, table.schema) as w:
            w.write_table(table)
    else:
        pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def read_arrow(store: ArtifactStore, uri: str) -> pa.Table:
    return pa.ipc.open_file(pa.BufferReader(store.read_bytes(uri))).read_all()


def put_local_file(store: ArtifactStore, uri: str, write) -> FileRecord:
    """Write through a local temporary file, then commit atomically; returns its record (name = uri)."""
    with tempfile.TemporaryDirectory(prefix="primer-curate-") as tmp:
        local = Path(tmp) / "f"
        write(local)
        rec = FileRecord(name=uri, bytes=local.stat().st_size, sha256=sha256_file(local))
        store.put_file(local, uri)
    return rec


class Work:
    """Paths of one curate run's work area."""

    def __init__(self, store: ArtifactStore, key: str):
        self.store, self.key = store, key
        self.uri = store.uri("curate-work", key)

    def shard(self, s: int, name: str) -> str:
        return f"{self.uri}/shards/{shard_name(s)}/{name}"

    def at(self, *parts: str) -> str:
        return "/".join([self.uri, *parts])

    def marker(self, uri: str) -> dict[str, Any] | None:
        return self.store.read_json(uri) if self.store.exists(uri) else None


# ------------------------------------------------------------------------------------------ planning


@dataclass
class ShardPlan:
    index: int
    source: dict[str, Any]           # ResolvedSource.to_dict() with this shard's files
    sizes: list[int]                 # input bytes per file (folder sources), else []
    row_limit: int = 0               # dataset sources capped by max_docs: stop after this many rows


def resolve_sources(cfg: CurateConfig, store_cfg: StoreConfig) -> list[ResolvedSource]:
    return [resolve_source(spec, store_cfg, i) for i, spec in enumerate(cfg.sources)]


def _file_sizes(src: ResolvedSource, store_cfg: StoreConfig) -> list[int]:
    if src.protocol == "file":
        return [os.path.getsize(f) for f in src.files]
    from primer.store import filesystem_for

    fs = filesystem_for(f"{src.protocol}://{src.base}", store_cfg)[0]
    return [int(fs.size(f)) for f in src.files]


def plan_shards(cfg: CurateConfig, sources: list[ResolvedSource], store_cfg: StoreConfig) -> list[ShardPlan]:
    """Split sources into shards: folder sources by `shard_bytes`, datasets one file per shard.

    `max_docs` keeps a seeded hash sample of a folder source's files (spread over the whole tree, stable
    when files are added elsewhere) and the first `max_docs` rows of a dataset source.
    """
    plans: list[ShardPlan] = []
    for src in sources:
        if src.format == "dir":
            files = src.files
            if cfg.max_docs and len(files) > cfg.max_docs:
                ranked = sorted(files, key=lambda f: hash64(f"{cfg.seed}:{f[len(src.base):]}"))
                chosen = set(ranked[: cfg.max_docs])
                files = [f for f in files if f in chosen]
            sub = dataclasses.replace(src, files=files)
            sizes = _file_sizes(sub, store_cfg)
            group: list[int] = []
            acc = 0
            for i, size in enumerate(sizes):
                group.append(i)
                acc += min(size, cfg.max_bytes)
                if acc >= cfg.shard_bytes or i == len(sizes) - 1:
                    part = dataclasses.replace(src, files=[files[j] for j in group])
                    plans.append(ShardPlan(len(plans), part.to_dict(), [sizes[j] for j in group]))
                    group, acc = [], 0
        elif cfg.max_docs:
            plans.append(ShardPlan(len(plans), src.to_dict(), [], row_limit=cfg.max_docs))
        else:
            for f in src.files:
                plans.append(ShardPlan(len(plans), dataclasses.replace(src, files=[f]).to_dict(), []))
    return plans


# ------------------------------------------------------------------------------------------ 1. filter


def _exclusion(doc_id: str, source: str, reason: str, detail: str, nbytes_: int | None, text: str | None,
               cap: int, duplicate_of: str | None = None) -> dict[str, Any]:
    return {"id": doc_id, "source": source, "reason": reason, "detail": detail, "duplicate_of": duplicate_of,
            "bytes": nbytes_, "text": (text[:cap] if (text is not None and cap) else None)}


def filter_shard(plan: ShardPlan, cfg: CurateConfig, store_cfg: StoreConfig, key: str) -> dict[str, Any]:
    """Read one shard, run the filter chain, write survivors + drops + dedup signatures, then the marker."""
    store = open_store(store_cfg)
    work = Work(store, key)
    marker_uri = work.shard(plan.index, "_SUCCESS.json")
    done = work.marker(marker_uri)
    if done is not None:
        return {**done, "resumed": True}
    t0 = time.time()
    src = ResolvedSource.from_dict(plan.source)
    cap = cfg.exclusion_text_chars
    excluded: list[dict[str, Any]] = []
    read = StepCount("read")
    reader_drops = DropCounter()
    readable = list(src.files)
    sizes_by_rel: dict[str, int] = {}
    if src.format == "dir":
        readable = []
        for f, size in zip(src.files, plan.sizes):
            rel = f[len(src.base):].lstrip("/")
            sizes_by_rel[rel] = size
            if size > cfg.max_bytes:  # never read a huge file into memory
                read.docs_in += 1
                read.bytes_in += size
                excluded.append(_exclusion(rel, src.name, "too_large", f"{size} bytes > {cfg.max_bytes} (not read)",
                                           size, None, cap))
                reader_drops.counts["too_large"] += 1
            else:
                readable.append(f)
    chain = FilterChain(default_filters(cfg), DropCounter())
    hasher = dd.MinHasher(cfg.num_perm, cfg.shingle_size, cfg.near_threshold, cfg.seed)
    kept: dict[str, list[Any]] = {name: [] for name in KEPT_SCHEMA.names}
    reader = read_documents(dataclasses.replace(src, files=readable), reader_drops, store_cfg)
    seen_reader_drops = 0
    for doc in reader:
        n = nbytes(doc)
        read.docs_in += 1
        read.docs_out += 1
        read.bytes_in += sizes_by_rel.get(doc.id, n)
        read.bytes_out += n
        keep, reason = chain.check(doc)
        if keep:
            kept["id"].append(doc.id)
            kept["source"].append(doc.source)
            kept["text"].append(doc.text)
            kept["bytes"].append(n)
            kept["lines"].append(doc.meta.get("lines") or doc.text.count("\n") + 1)
            kept["sha256"].append(sha256_text(doc.text))
        else:
            name, detail = split_reason(reason)
            excluded.append(_exclusion(doc.id, doc.source, name, detail, n, doc.text, cap))
        if plan.row_limit and read.docs_in >= plan.row_limit:
            break
    for drop in reader_drops.all[seen_reader_drops:]:  # undecodable/binary/empty: no text to keep
        size = sizes_by_rel.get(drop.id)
        read.docs_in += 1
        read.bytes_in += size or 0
        excluded.append(_exclusion(drop.id, drop.source, drop.reason, drop.detail, size, None, cap))
    # survivors, drops, signatures (in that order), then the marker
    kept_table = pa.table(kept, schema=KEPT_SCHEMA)
    store.write_bytes(work.shard(plan.index, "kept.arrow"), write_table_bytes(kept_table))
    store.write_bytes(work.shard(plan.index, "drops.arrow"),
                      write_table_bytes(pa.Table.from_pylist(excluded, schema=EXCLUSION_SCHEMA)))
    sigs = dd.build_signatures(kept["text"], hasher, cfg.dedup_near)
    buf = io.BytesIO()
    np.save(buf, sigs.minhash)
    store.write_bytes(work.shard(plan.index, "minhash.npy"), buf.getvalue())
    for k, blob in enumerate(dd.bucket_records(plan.index, sigs, cfg.dedup_buckets, cfg.dedup_exact)):
        store.write_bytes(work.shard(plan.index, f"bucket-{k:04d}.npz"), blob)
    # bottom-k sample keys (content-based: the same document is sampled again in a later run)
    sample_keys = [hash64(f"{cfg.seed}:{h}") for h in kept["sha256"]]
    take = 2 * cfg.annotate_n + 8
    sample = sorted(zip(sample_keys, range(len(sample_keys))))[:take]
    drops = DropCounter()
    for row in excluded:
        drops.counts[row["reason"]] += 1
    stats = {
        "shard": plan.index, "source": src.name, "read": asdict(read),
        "filters": [asdict(c) for c in chain.counts.values()],
        "drops": drops.as_dict(), "kept": kept_table.num_rows, "kept_bytes": int(sum(kept["bytes"])),
        "sample": [[int(k), int(r)] for k, r in sample], "seconds": round(time.time() - t0, 3),
    }
    store.write_json(marker_uri, stats)
    return stats


# ------------------------------------------------------------------------------------------ 2. dedup


def dedup_bucket(k: int, shards: list[int], key: str, store_cfg: StoreConfig) -> dict[str, int]:
    store = open_store(store_cfg)
    work = Work(store, key)
    out_uri = work.at("dedup", f"bucket-{k:04d}.npz")
    if store.exists(out_uri):
        e = dd.from_npz(store.read_bytes(out_uri))
        return {"bucket": k, "exact_edges": len(e["exact_a"]), "near_candidates": len(e["near_a"]), "resumed": 1}
    parts = [dd.from_npz(store.read_bytes(work.shard(s, f"bucket-{k:04d}.npz"))) for s in shards]
    edges = dd.bucket_edges(parts)
    store.write_bytes(out_uri, dd.to_npz(**edges))
    return {"bucket": k, "exact_edges": len(edges["exact_a"]), "near_candidates": len(edges["near_a"])}


def _shard_of(doc: int) -> tuple[int, int]:
    return doc >> dd.SHARD_SHIFT, doc & 0xFFFFFFFF


def dedup_cluster(shards: list[int], cfg: CurateConfig, key: str, store_cfg: StoreConfig) -> dict[str, Any]:
    """Join every partition's edges into removed documents; write one removed-table per shard."""
    store = open_store(store_cfg)
    work = Work(store, key)
    marker_uri = work.at("dedup", "_SUCCESS.json")
    done = work.marker(marker_uri)
    if done is not None:
        return done
    t0 = time.time()
    edges = [dd.from_npz(store.read_bytes(work.at("dedup", f"bucket-{k:04d}.npz"))) for k in range(cfg.dedup_buckets)]

    def by_shard(docs) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for d in np.asarray(docs, dtype=np.int64).tolist():
            s, r = _shard_of(d)
            out.setdefault(s, []).append(r)
        return out

    def load_minhash(docs: np.ndarray) -> dict[int, np.ndarray]:
        out = {}
        for s, rows in by_shard(docs).items():
            mh = np.load(io.BytesIO(store.read_bytes(work.shard(s, "minhash.npy"))))
            for r in rows:
                out[(s << dd.SHARD_SHIFT) | r] = mh[r]
        return out

    result = dd.cluster(edges, load_minhash, cfg.near_threshold, cfg.near_verify)
    # names of kept copies, for the evidence column
    needed = set(result.exact.values()) | {kept for kept, _ in result.near.values()}
    names: dict[int, str] = {}
    for s, rows in by_shard(sorted(needed)).items():
        t = read_arrow(store, work.shard(s, "kept.arrow")).select(["id", "source"])
        ids, srcs = t.column("id").to_pylist(), t.column("source").to_pylist()
        for r in rows:
            names[(s << dd.SHARD_SHIFT) | r] = f"{srcs[r]}:{ids[r]}"
    removed: dict[int, list[tuple[int, str, str, str]]] = {s: [] for s in shards}
    for d, kept in result.exact.items():
        s, r = _shard_of(d)
        removed[s].append((r, "exact_duplicate", f"same normalized text as {names[kept]}", names[kept]))
    for d, (kept, sim) in result.near.items():
        s, r = _shard_of(d)
        removed[s].append((r, "near_duplicate", f"estimated Jaccard {sim:.2f} with {names[kept]}", names[kept]))
    for s in shards:
        rows = sorted(removed.get(s, []))
        table = pa.table({"row": pa.array([x[0] for x in rows], pa.int64()),
                          "reason": pa.array([x[1] for x in rows], pa.string()),
                          "detail": pa.array([x[2] for x in rows], pa.string()),
                          "duplicate_of": pa.array([x[3] for x in rows], pa.string())})
        store.write_bytes(work.at("dedup", f"removed-{shard_name(s)}.arrow"), write_table_bytes(table))
    summary = {"exact_duplicates": len(result.exact), "near_duplicates": len(result.near),
               "near_candidate_pairs": result.candidates, "near_confirmed_pairs": result.confirmed,
               "seconds": round(time.time() - t0, 3)}
    store.write_json(marker_uri, summary)
    return summary


def load_removed(store: ArtifactStore, work: Work, s: int) -> dict[int, tuple[str, str, str]]:
    t = read_arrow(store, work.at("dedup", f"removed-{shard_name(s)}.arrow")).to_pylist()
    return {r["row"]: (r["reason"], r["detail"], r["duplicate_of"]) for r in t}


# ------------------------------------------------------------------------------------------ 3. sample


def pick_sample(shard_stats: list[dict[str, Any]], removed: dict[int, set[int]], n: int) -> list[tuple[int, int]]:
    """The n documents with the smallest sample keys among dedup survivors: [(shard, row)], deterministic."""
    cands = []
    for st in shard_stats:
        s = st["shard"]
        gone = removed.get(s, set())
        cands += [(k, s, r) for k, r in st["sample"] if r not in gone]
    cands.sort()
    return [(s, r) for _, s, r in cands[:n]]


def fetch_docs(store: ArtifactStore, work: Work, picks: list[tuple[int, int]]) -> list[dict[str, Any]]:
    by: dict[int, list[int]] = {}
    for s, r in picks:
        by.setdefault(s, []).append(r)
    rows: dict[tuple[int, int], dict[str, Any]] = {}
    for s, rs in by.items():
        t = read_arrow(store, work.shard(s, "kept.arrow"))
        sub = t.take(pa.array(rs, pa.int64())).to_pylist()
        for r, row in zip(rs, sub):
            rows[(s, r)] = {**row, "shard": s, "row": r}
    return [rows[p] for p in picks]


# ------------------------------------------------------------------------------------------ 4. finalize


@lru_cache(maxsize=2)
def _cached_model(store_root: str, key: str, store_cfg_json: str):
    from tasks.curate import quality

    store = open_store(StoreConfig(**json.loads(store_cfg_json)))
    return quality.load(store, key)


@lru_cache(maxsize=2)
def _cached_embedder(cfg_json: str, teacher_json: str):
    from tasks.curate.embed import make_embedder

    cfg = CurateConfig(**{k: v for k, v in json.loads(cfg_json).items() if k != "sources"})
    teacher = json.loads(teacher_json)
    return make_embedder(cfg, type("T", (), teacher)() if teacher else None)


def embedder_for(cfg: CurateConfig, teacher_cfg: Any = None):
    section = {k: v for k, v in asdict(cfg).items() if k != "sources"}
    teacher = asdict(teacher_cfg) if dataclasses.is_dataclass(teacher_cfg) else {}
    return _cached_embedder(json.dumps(section, sort_keys=True), json.dumps(teacher, sort_keys=True, default=str))


def finalize_shard(s: int, cfg: CurateConfig, store_cfg: StoreConfig, key: str, out_uri: str,
                   model_key: str | None, annotations: dict[int, float], teacher_cfg: Any = None) -> dict[str, Any]:
    """Dedup survivors -> quality filter -> decontamination -> data/part-<s>.parquet + side tables."""
    store = open_store(store_cfg)
    work = Work(store, key)
    marker_uri = work.at("final", f"{shard_name(s)}.json")
    done = work.marker(marker_uri)
    if done is not None:
        return {**done, "resumed": True}
    t0 = time.time()
    cap = cfg.exclusion_text_chars
    kept = read_arrow(store, work.shard(s, "kept.arrow")).to_pylist()
    excluded = read_arrow(store, work.shard(s, "drops.arrow")).to_pylist()
    removed = load_removed(store, work, s)
    steps: dict[str, StepCount] = {n: StepCount(n) for n in ("dedup", "quality", "decontamination")}

    def count(step: str, docs: list[dict[str, Any]], after: list[dict[str, Any]]) -> None:
        c = steps[step]
        c.docs_in, c.bytes_in = len(docs), sum(d["bytes"] for d in docs)
        c.docs_out, c.bytes_out = len(after), sum(d["bytes"] for d in after)

    survivors = []
    for r, doc in enumerate(kept):
        doc["annotation"] = annotations.get(r)
        if r in removed:
            reason, detail, dup_of = removed[r]
            excluded.append(_exclusion(doc["id"], doc["source"], reason, detail, doc["bytes"], doc["text"], cap, dup_of))
        else:
            survivors.append(doc)
    count("dedup", kept, survivors)
    # quality
    t_q = time.time()
    if model_key:
        model = _cached_model(store_cfg.root, model_key, json.dumps(asdict(store_cfg), sort_keys=True))
        embedder = embedder_for(cfg, teacher_cfg)
        probs: list[float] = []
        for i in range(0, len(survivors), 256):
            feats = embedder.embed([d["text"] for d in survivors[i:i + 256]])
            probs.extend(model.predict(feats).tolist())
    else:  # no classifier (annotate_n = 0): nothing is scored or dropped
        probs = [None] * len(survivors)
    good = []
    for doc, p in zip(survivors, probs):
        doc["quality"] = p
        if p is None or p >= cfg.quality_min:
            good.append(doc)
        else:
            excluded.append(_exclusion(doc["id"], doc["source"], "low_quality",
                                       f"P(educational)={p:.3f} < {cfg.quality_min:g}", doc["bytes"], doc["text"], cap))
    count("quality", survivors, good)
    t_q = time.time() - t_q
    # decontamination
    t_d = time.time()
    clean, evidence = [], []
    if cfg.decontaminate:
        from tasks.curate.decontam import decontaminator

        checker = decontaminator(cfg.mbpp_path, cfg.ngram_size, cfg.ngram_threshold, cfg.ast_threshold,
                                 cfg.ast_min_nodes)
        for doc in good:
            hits = checker.check(doc["text"])
            if not hits:
                clean.append(doc)
                continue
            for h in hits:
                evidence.append({"id": doc["id"], "source": doc["source"], "benchmark": h.benchmark,
                                 "task_id": h.task_id, "method": h.method, "score": h.score, "snippet": h.snippet})
            top = hits[0]
            more = f" (+{len(hits) - 1} more)" if len(hits) > 1 else ""
            excluded.append(_exclusion(doc["id"], doc["source"], "contaminated",
                                       f"{top.task_id} {top.method} score {top.score:.2f}{more}", doc["bytes"],
                                       doc["text"], cap, top.task_id))
    else:
        clean = good
    count("decontamination", good, clean)
    t_d = time.time() - t_d
    # write: documents, exclusions, contamination evidence; then the marker
    name = shard_name(s)
    docs_table = pa.Table.from_pylist(
        [{c: d.get(c) for c in DOC_SCHEMA.names} for d in clean], schema=DOC_SCHEMA)
    records = [
        put_local_file(store, f"{out_uri}/data/part-{name}.parquet",
                       lambda p: pq.write_table(docs_table, p, compression="zstd")),
        put_local_file(store, f"{out_uri}/exclusions/part-{name}{SIDE_EXT}",
                       lambda p: pq.write_table(pa.Table.from_pylist(excluded, schema=EXCLUSION_SCHEMA), p,
                                                compression="zstd")),
        put_local_file(store, f"{out_uri}/contamination/part-{name}{SIDE_EXT}",
                       lambda p: pq.write_table(pa.Table.from_pylist(evidence, schema=CONTAMINATION_SCHEMA), p,
                                                compression="zstd")),
    ]
    drops = DropCounter()
    for row in excluded:
        drops.counts[row["reason"]] += 1
    result = {
        "shard": s, "steps": [asdict(c) for c in steps.values()], "drops": drops.as_dict(),
        "docs": docs_table.num_rows, "bytes": int(sum(d["bytes"] for d in clean)),
        "contamination_hits": len(evidence),
        "files": [{"name": r.name[len(out_uri) + 1:], "bytes": r.bytes, "sha256": r.sha256} for r in records],
        "seconds": {"quality": round(t_q, 3), "decontamination": round(t_d, 3), "total": round(time.time() - t0, 3)},
    }
    store.write_json(marker_uri, result)
    return result


__all__ = ["ShardPlan", "plan_shards", "resolve_sources", "filter_shard", "dedup_bucket", "dedup_cluster",
           "pick_sample", "fetch_docs", "finalize_shard", "Work", "STAGE_VERSION", "DOC_SCHEMA",
           "EXCLUSION_SCHEMA", "CONTAMINATION_SCHEMA", "SIDE_EXT"]
