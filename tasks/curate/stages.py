"""The curate stage's units of work, free of Prefect (`prefect_tasks.py` declares them as tasks).

    prepare -> filter_shard (per shard) -> dedup_bucket (per hash partition) -> dedup_cluster (once)
            -> [annotate.annotate_sample -> quality.train_classifier] -> finalize_shard (per shard)
            -> output.write_output

Every unit takes only plain, picklable arguments (settings dataclasses, a key, shard numbers), rebuilds
its store handle from them and keeps its state in the work area (`work.py`), so it runs the same in a
thread, another process or a Dask/Ray worker, and the output bytes do not depend on where or in what order
units ran.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from primer.config import StoreConfig
from primer.documents import DropCounter
from primer.errors import InputError, PrimerError
from primer.minhash import hash64
from primer.settings.curate import CurateConfig
from primer.store import FileRecord, content_key, open_store
from tasks.curate import dedup as dd
from tasks.curate import quality
from tasks.curate.embed import embedder_for
from tasks.curate.filters import FilterChain, StepCount, default_filters, nbytes, split_reason
from tasks.curate.text import sha256_text
from tasks.curate.work import (Work, load_removed, read_arrow, read_arrow_rows, read_npy_rows, shard_name,
                               write_table_bytes)
from tasks.sources import ResolvedSource, read_documents, resolve_source

log = logging.getLogger("primer.curate")
STAGE_VERSION = 4  # 4: recall-weighted LSH bands, exact Jaccard near the threshold
DOC_SCHEMA = pa.schema([
    ("id", pa.string()), ("text", pa.string()), ("source", pa.string()), ("quality", pa.float32()),
    ("annotation", pa.float32()), ("bytes", pa.int64()), ("lines", pa.int32()), ("sha256", pa.string()),
])
KEPT_SCHEMA = pa.schema([("id", pa.string()), ("source", pa.string()), ("text", pa.string()),
                         ("bytes", pa.int64()), ("lines", pa.int32()), ("sha256", pa.string())])
# kept.arrow is written in record batches of ~32 kB of text, so dedup reads the few texts it checks exactly
# with one small ranged read each, not the whole shard.
KEPT_BATCH_BYTES = 32_768
EXCLUSION_SCHEMA = pa.schema([
    ("id", pa.string()), ("source", pa.string()), ("reason", pa.string()), ("detail", pa.string()),
    ("duplicate_of", pa.string()), ("bytes", pa.int64()), ("text", pa.string()),
])
CONTAMINATION_SCHEMA = pa.schema([
    ("id", pa.string()), ("source", pa.string()), ("benchmark", pa.string()), ("task_id", pa.string()),
    ("method", pa.string()), ("score", pa.float32()), ("snippet", pa.string()),
])
# Side tables are ordinary Parquet files: other stages read only the files the manifest's `datasets` lists.
SIDE_EXT = ".parquet"
DATASET = "documents"
# Settings that say where things are, not what is computed: never part of the key.
_LOCATION_KNOBS = ("sources", "mbpp_path", "keep_work")


class EmptyCurateResult(PrimerError):
    """Every document was dropped: there is nothing to hand to the next stage."""


def require_documents(kept: list[int], n_in: int, drops: dict[str, int]) -> None:
    """Fail with the drop counts when no document is left (after the filters, or at the end)."""
    if sum(kept):
        return
    shown = ", ".join(f"{reason} {n}" for reason, n in sorted(drops.items(), key=lambda kv: (-kv[1], kv[0])))
    raise EmptyCurateResult(
        f"curate: kept 0 of {n_in} documents (dropped: {shown or 'none'}). Nothing was published; check "
        "curate.sources and the setting behind the largest drop reason (docs/curate.md lists each reason's knob).")


def require_filter_survivors(shard_stats: list[dict[str, Any]]) -> None:
    drops: dict[str, int] = {}
    for st in shard_stats:
        for reason, n in st["drops"].items():
            drops[reason] = drops.get(reason, 0) + n
    require_documents([st["kept"] for st in shard_stats], sum(st["read"]["docs_in"] for st in shard_stats), drops)


# ------------------------------------------------------------------------------------------ planning


@dataclass
class ShardPlan:
    index: int
    source: dict[str, Any]           # ResolvedSource.to_dict() with this shard's files
    sizes: list[int]                 # input bytes per file (folder sources), else []
    row_limit: int = 0               # dataset sources capped by max_docs: stop after this many rows


def resolve_sources(cfg: CurateConfig, store_cfg: StoreConfig) -> list[ResolvedSource]:
    return [resolve_source(spec, store_cfg, i, setting="curate.sources") for i, spec in enumerate(cfg.sources)]


@dataclass
class RunPlan:
    """What one curate run will do: its key, its sources and its shards (plain data: it travels to workers)."""

    key: str
    sources: list[ResolvedSource]
    plans: list[ShardPlan]
    mbpp_fingerprint: str
    settings: dict[str, Any] = field(default_factory=dict)   # the curate section, as it enters the key

    @property
    def shards(self) -> list[int]:
        return [p.index for p in self.plans]


def stage_key(cfg: CurateConfig, sources: list[ResolvedSource], mbpp_fp: str, teacher_cfg: Any = None) -> str:
    """Content key: the stage version, the settings that change what is computed, the sources' content
    fingerprints and display names (the `source` column), MBPP's content fingerprint and the teacher
    settings that change answers. Never a path or URI, so a moved store or input folder keeps its key."""
    section = {k: v for k, v in asdict(cfg).items() if k not in _LOCATION_KNOBS}
    inputs = [(s.name, s.fingerprint) for s in sources]
    teacher = None
    if teacher_cfg is not None and (cfg.annotator == "teacher" or cfg.embedder == "endpoint"):
        teacher = {k: getattr(teacher_cfg, k, None) for k in ("model", "api", "temperature", "top_p", "seed")}
    return content_key(STAGE_VERSION, section, inputs, mbpp_fp, teacher)


def locate_mbpp(cfg: CurateConfig) -> tuple[str, str]:
    """(MBPP location, "") or ("", why it is skipped), by the lookup every stage uses (primer.scoring)."""
    if not cfg.decontaminate:
        return cfg.mbpp_path, ""
    from primer.scoring.data_files import try_locate_mbpp

    return try_locate_mbpp(cfg.mbpp_path)


def mbpp_fingerprint(cfg: CurateConfig, store_cfg: StoreConfig) -> str:
    if not (cfg.decontaminate and cfg.mbpp_path):
        return ""
    from tasks.curate.decontam import load_mbpp

    return content_key([(i.task_id, i.code) for i in load_mbpp(cfg.mbpp_path, store_cfg)], length=32)


def prepare(cfg: CurateConfig, store_cfg: StoreConfig, teacher_cfg: Any = None) -> RunPlan:
    """Resolve and fingerprint the sources, fingerprint MBPP, compute the key and cut the shards."""
    sources = resolve_sources(cfg, store_cfg)
    mbpp_fp = mbpp_fingerprint(cfg, store_cfg)
    key = stage_key(cfg, sources, mbpp_fp, teacher_cfg)
    return RunPlan(key, sources, plan_shards(cfg, sources, store_cfg), mbpp_fp,
                   {k: v for k, v in asdict(cfg).items() if k not in _LOCATION_KNOBS})


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


def _curate_reads(docs):
    """Documents from tasks/sources.py; its read-time messages suggest `pack.sources` fixes, these are
    curate's."""
    it = iter(docs)
    while True:
        try:
            doc = next(it)
        except StopIteration:
            return
        except InputError as e:
            raise InputError(str(e).replace("pack.sources", "curate.sources")) from None
        yield doc


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
    hasher = dd.curate_hasher(cfg.num_perm, cfg.shingle_size, cfg.near_threshold, cfg.seed)
    kept: dict[str, list[Any]] = {name: [] for name in KEPT_SCHEMA.names}
    reader = read_documents(dataclasses.replace(src, files=readable), reader_drops, store_cfg)
    seen_reader_drops = 0
    for doc in _curate_reads(reader):
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
    store.write_bytes(work.shard(plan.index, "kept.arrow"), write_table_bytes(kept_table, KEPT_BATCH_BYTES))
    store.write_bytes(work.shard(plan.index, "ids.arrow"), write_table_bytes(kept_table.select(["id", "source"])))
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


def load_signatures(store, work: Work, docs: np.ndarray, num_perm: int) -> np.ndarray:
    """uint32[len(docs), num_perm]: the signatures of these docs only, read by row from each shard's file."""
    out = np.zeros((len(docs), num_perm), dtype=np.uint32)
    for sh, where, rows in dd.by_shard(docs):
        out[where] = read_npy_rows(store, work.shard(sh, "minhash.npy"), rows)
    return out


def load_shingles(store, work: Work, docs: np.ndarray, hasher: dd.MinHasher) -> list[np.ndarray]:
    """The shingle hashes of these docs only, from their texts read by record batch from each shard's kept file."""
    out: list[np.ndarray] = [np.zeros(0, np.uint64)] * len(docs)
    for sh, where, rows in dd.by_shard(docs):
        for i, text in zip(where.tolist(), read_arrow_rows(store, work.shard(sh, "kept.arrow"), rows, "text")):
            out[i] = hasher.shingles(text)
    return out


def _bucket_stats(k: int, e: dict[str, np.ndarray]) -> dict[str, int]:
    return {"bucket": k, "exact_edges": len(e["exact_a"]), "near_candidates": int(e["candidates"]),
            "near_exact_checked": int(e["exact_checked"]), "near_confirmed": len(e["near_a"])}


def dedup_bucket(k: int, shards: list[int], cfg: CurateConfig, key: str, store_cfg: StoreConfig) -> dict[str, int]:
    """Partition k: candidate edges from every shard's records, near pairs confirmed against the signatures
    of this partition's candidate documents only (and, near the threshold, against their texts); writes the
    duplicate edges (`dedup/edges-<k>.npz`)."""
    store = open_store(store_cfg)
    work = Work(store, key)
    out_uri = work.at("dedup", f"edges-{k:04d}.npz")
    if store.exists(out_uri):
        return {**_bucket_stats(k, dd.from_npz(store.read_bytes(out_uri))), "resumed": 1}
    parts = [dd.from_npz(store.read_bytes(work.shard(s, f"bucket-{k:04d}.npz"))) for s in shards]
    edges = dd.bucket_edges(parts)
    del parts
    hasher = dd.curate_hasher(cfg.num_perm, cfg.shingle_size, cfg.near_threshold, cfg.seed)
    verified = dd.verify_edges(edges, lambda docs: load_signatures(store, work, docs, cfg.num_perm),
                               cfg.near_threshold, cfg.near_verify,
                               lambda docs: load_shingles(store, work, docs, hasher), cfg.near_exact_margin)
    store.write_bytes(out_uri, dd.to_npz(**verified))
    return _bucket_stats(k, verified)


def _shard_of(doc: int) -> tuple[int, int]:
    return doc >> dd.SHARD_SHIFT, doc & 0xFFFFFFFF


def _doc_names(store, work: Work, docs: np.ndarray) -> dict[int, str]:
    """`source:id` of each doc, from the shards' small id tables (kept.arrow in a work area from before)."""
    names: dict[int, str] = {}
    for sh, where, rows in dd.by_shard(docs):
        uri = work.shard(sh, "ids.arrow")
        t = read_arrow(store, uri if store.exists(uri) else work.shard(sh, "kept.arrow")).select(["id", "source"])
        ids, srcs = t.column("id"), t.column("source")
        for d, r in zip(docs[where].tolist(), rows.tolist()):
            names[d] = f"{srcs[r].as_py()}:{ids[r].as_py()}"
    return names


def dedup_cluster(shards: list[int], cfg: CurateConfig, key: str, store_cfg: StoreConfig) -> dict[str, Any]:
    """Union-find over every partition's duplicate edges (no signatures, no documents); writes one
    removed-table per shard."""
    store = open_store(store_cfg)
    work = Work(store, key)
    marker_uri = work.at("dedup", "_SUCCESS.json")
    done = work.marker(marker_uri)
    if done is not None:
        return done
    t0 = time.time()
    edges = (dd.from_npz(store.read_bytes(work.at("dedup", f"edges-{k:04d}.npz"))) for k in range(cfg.dedup_buckets))
    result = dd.cluster(edges, cfg.near_threshold)  # reads the partitions' edges one at a time
    # names of the kept copies (for the evidence column), read shard by shard
    names = _doc_names(store, work, np.unique(np.concatenate([result.exact_kept, result.near_kept])))
    removed: dict[int, list[tuple[int, str, str, str]]] = {sh: [] for sh in shards}
    for d, kept in zip(result.exact_removed.tolist(), result.exact_kept.tolist()):
        sh, r = _shard_of(d)
        removed[sh].append((r, "exact_duplicate", f"same normalized text as {names[kept]}", names[kept]))
    for d, kept, sim in zip(result.near_removed.tolist(), result.near_kept.tolist(), result.near_sim.tolist()):
        sh, r = _shard_of(d)
        removed[sh].append((r, "near_duplicate", f"Jaccard {sim:.2f} with {names[kept]}", names[kept]))
    for sh in shards:
        rows = sorted(removed.get(sh, []))
        table = pa.table({"row": pa.array([x[0] for x in rows], pa.int64()),
                          "reason": pa.array([x[1] for x in rows], pa.string()),
                          "detail": pa.array([x[2] for x in rows], pa.string()),
                          "duplicate_of": pa.array([x[3] for x in rows], pa.string())})
        store.write_bytes(work.at("dedup", f"removed-{shard_name(sh)}.arrow"), write_table_bytes(table))
    summary = {"exact_duplicates": len(result.exact_removed), "near_duplicates": len(result.near_removed),
               "near_pairs_checked": result.candidates, "near_pairs_exact_checked": result.exact_checked,
               "near_confirmed_pairs": result.confirmed,
               "seconds": round(time.time() - t0, 3)}
    store.write_json(marker_uri, summary)
    return summary


def finalize_shard(s: int, cfg: CurateConfig, store_cfg: StoreConfig, key: str, model_key: str | None,
                   annotations: dict[int, float], teacher_cfg: Any = None) -> dict[str, Any]:
    """Dedup survivors -> quality filter -> decontamination -> data/part-<s>.parquet + side tables.

    Files are committed through the stage's `StageOutput` (`curate/<key>`); their records come back in
    the result so the flow's output lists them in the manifest.
    """
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
        model = quality.cached_model(store_cfg, model_key)
        embedder = embedder_for(cfg, teacher_cfg)
        probs: list[float | None] = []
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
                                       f"quality {p:.3f} < curate.quality_min {cfg.quality_min:g}", doc["bytes"],
                                       doc["text"], cap))
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
    # write: documents, exclusions, contamination evidence (through the stage output); then the marker
    out = store.output("curate", key)
    name = shard_name(s)
    tables = {
        f"data/part-{name}.parquet": pa.Table.from_pylist([{c: d.get(c) for c in DOC_SCHEMA.names} for d in clean],
                                                          schema=DOC_SCHEMA),
        f"exclusions/part-{name}{SIDE_EXT}": pa.Table.from_pylist(excluded, schema=EXCLUSION_SCHEMA),
        f"contamination/part-{name}{SIDE_EXT}": pa.Table.from_pylist(evidence, schema=CONTAMINATION_SCHEMA),
    }
    records = [write_parquet(out, file_name, table) for file_name, table in tables.items()]
    drops = DropCounter()
    for row in excluded:
        drops.counts[row["reason"]] += 1
    result = {
        "shard": s, "steps": [asdict(c) for c in steps.values()], "drops": drops.as_dict(),
        "docs": len(clean), "bytes": int(sum(d["bytes"] for d in clean)),
        "contamination_hits": len(evidence), "files": [vars(r) for r in records],
        "seconds": {"quality": round(t_q, 3), "decontamination": round(t_d, 3), "total": round(time.time() - t0, 3)},
    }
    store.write_json(marker_uri, result)
    return result


def write_parquet(out, name: str, table: pa.Table) -> FileRecord:
    """Commit one Parquet file to a stage output (zstd; byte-identical for identical tables)."""
    with tempfile.TemporaryDirectory(prefix="primer-curate-") as tmp:
        local = Path(tmp) / "part.parquet"
        pq.write_table(table, local, compression="zstd")
        return out.commit_file(local, name)


__all__ = ["ShardPlan", "RunPlan", "prepare", "stage_key", "plan_shards", "resolve_sources", "filter_shard",
           "dedup_bucket", "dedup_cluster", "finalize_shard", "write_parquet", "STAGE_VERSION", "DOC_SCHEMA",
           "EXCLUSION_SCHEMA", "CONTAMINATION_SCHEMA", "SIDE_EXT", "DATASET"]
