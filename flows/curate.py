"""`curate`: raw code -> filtered, deduplicated, quality-scored, decontaminated documents (phi-1 recipe).

    sources -> plan shards -> filter_shard.map -> dedup_bucket.map -> dedup_cluster -> annotate_sample
            -> train_classifier -> finalize_shard.map -> curate/<key>/ (+ manifest.json, last)

Mapped tasks run on the flow's task runner (threads by default; a deployment may choose processes, Dask or
Ray). Every unit writes its outputs and then a marker under curate-work/<key>/, so a re-run after a crash
skips finished shards; a re-run after success reuses the whole output (same content key).

Output (see docs/curate.md): `data/part-*.parquet` (id, text, source, quality, annotation, bytes, lines,
sha256) — the only *.parquet files, so `SourceSpec(uri=<output>, format="parquet")` reads exactly the
curated documents — plus `exclusions/*.pqt`, `contamination/*.pqt`, `annotations.pqt`, `stats.json`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import flow, task, unmapped
from prefect.cache_policies import NO_CACHE

from primer import dashboard
from primer.config import PrimerConfig, load_config
from primer.scoring.data_files import MBPP_ENV
from primer.store import ArtifactStore, FileRecord, content_key, open_store
from tasks.curate import stages
from tasks.curate.stages import Work


def _logger() -> logging.Logger | Any:
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:
        return logging.getLogger("primer.curate")


# ------------------------------------------------------------------------------------------- tasks

filter_shard = task(name="curate-filter-shard", cache_policy=NO_CACHE, retries=1)(stages.filter_shard)
dedup_bucket = task(name="curate-dedup-bucket", cache_policy=NO_CACHE, retries=1)(stages.dedup_bucket)
dedup_cluster = task(name="curate-dedup-cluster", cache_policy=NO_CACHE)(stages.dedup_cluster)
finalize_shard = task(name="curate-finalize-shard", cache_policy=NO_CACHE, retries=1)(stages.finalize_shard)


@task(name="curate-annotate", cache_policy=NO_CACHE)
def annotate_sample(cfg: PrimerConfig, key: str, shard_stats: list[dict[str, Any]]) -> dict[str, Any]:
    """Label a seeded sample of dedup survivors; the result is kept in the work area (re-runs reuse it)."""
    from tasks.curate.annotate import make_annotator

    c = cfg.curate
    store = open_store(cfg.store)
    work = Work(store, key)
    marker = work.at("annotate", "_SUCCESS.json")
    done = work.marker(marker)
    if done is not None:
        return done
    removed = {st["shard"]: set(stages.load_removed(store, work, st["shard"])) for st in shard_stats}
    picks = stages.pick_sample(shard_stats, removed, c.annotate_n)
    docs = stages.fetch_docs(store, work, picks)
    t0 = time.time()
    annotator = make_annotator(c, cfg.teacher, store)
    answers = annotator.annotate([d["text"] for d in docs], [d["sha256"] for d in docs])
    rows = [{"id": d["id"], "source": d["source"], "sha256": d["sha256"], "shard": d["shard"], "row": d["row"],
             "score": a.score, "educational": None if a.score is None else bool(a.score >= c.label_threshold),
             "annotator": annotator.name, "rationale": a.rationale[:500], "error": a.error}
            for d, a in zip(docs, answers)]
    result = {"rows": rows, "annotator": annotator.name, "seconds": round(time.time() - t0, 3),
              "usage": getattr(annotator, "usage", None)}
    store.write_json(marker, result)
    return result


@task(name="curate-train-classifier", cache_policy=NO_CACHE)
def train_classifier(cfg: PrimerConfig, key: str, annotations: dict[str, Any]) -> dict[str, Any]:
    """Fit (or reuse) the random forest on the annotations; publish held-out metrics."""
    from tasks.curate import quality

    c = cfg.curate
    store = open_store(cfg.store)
    work = Work(store, key)
    rows = [r for r in annotations["rows"] if r["score"] is not None]
    failed = len(annotations["rows"]) - len(rows)
    labels = np.array([1 if r["educational"] else 0 for r in rows], dtype=np.int64)
    quality.check_counts(labels, c.min_per_class, len(rows), failed)
    embedder = stages.embedder_for(c, cfg.teacher)
    spec = embedder.spec()
    ann_hash = content_key(sorted((r["sha256"], r["score"]) for r in rows), length=64)
    model_key = quality.classifier_key(ann_hash, spec, c)
    t0 = time.time()
    model = quality.load(store, model_key)
    reused = model is not None
    if model is None:
        picks = [(r["shard"], r["row"]) for r in rows]
        texts = [d["text"] for d in stages.fetch_docs(store, work, picks)]
        model = quality.train(embedder.embed(texts), labels, c, spec)
        model = quality.save(store, model, model_key, {"annotations": len(rows), "annotator": annotations["annotator"],
                                                       "embedder": spec, "metrics": model.metrics})
    m = model.metrics
    dashboard.table("curate-classifier-metrics", [
        {"class": name, **{k: round(v, 4) if isinstance(v, float) else v for k, v in vals.items()}}
        for name, vals in m["per_class"].items()
    ] + [{"class": "accuracy", "precision": round(m["accuracy"], 4), "recall": "", "f1": "",
          "support": m["n_test"]}], description=f"Quality classifier, held-out {m['n_test']} of "
                                               f"{m['n_train'] + m['n_test']} annotations ({annotations['annotator']})")
    cm = m["confusion_matrix"]["rows_true_cols_pred"]
    dashboard.markdown("curate-classifier-confusion",
                       "### Quality classifier: held-out confusion matrix\n\n| true \\ predicted | low | educational |\n"
                       f"|---|---|---|\n| low | {cm[0][0]} | {cm[0][1]} |\n| educational | {cm[1][0]} | {cm[1][1]} |\n\n"
                       f"precision {m['precision']:.3f} · recall {m['recall']:.3f} · F1 {m['f1']:.3f} · "
                       f"classifier `{model_key}` sha256 `{model.sha256[:16]}`{' (reused)' if reused else ''}\n")
    return {"model_key": model_key, "sha256": model.sha256, "metrics": m, "reused": reused,
            "seconds": round(time.time() - t0, 3), "uri": store.uri("curate-classifier", model_key)}


# ------------------------------------------------------------------------------------------- funnel


def funnel_rows(filter_stats: list[dict[str, Any]], final_stats: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Documents and bytes in -> after reading/decoding -> after each filter -> dedup -> quality -> decontam."""
    def total(step_dicts: list[dict[str, Any]]) -> dict[str, int]:
        return {k: sum(d[k] for d in step_dicts) for k in ("docs_in", "bytes_in", "docs_out", "bytes_out")}

    rows = []
    read = total([s["read"] for s in filter_stats])
    rows.append({"step": "input", "docs": read["docs_in"], "bytes": read["bytes_in"]})
    rows.append({"step": "after read (decodable text)", "docs": read["docs_out"], "bytes": read["bytes_out"]})
    names = [f["step"] for f in filter_stats[0]["filters"]] if filter_stats else []
    for i, name in enumerate(names):
        t = total([s["filters"][i] for s in filter_stats])
        rows.append({"step": f"after filter {name}", "docs": t["docs_out"], "bytes": t["bytes_out"]})
    for i, name in enumerate(("dedup", "quality", "decontamination")):
        t = total([s["steps"][i] for s in final_stats])
        rows.append({"step": f"after {name}", "docs": t["docs_out"], "bytes": t["bytes_out"]})
    prev = None
    for r in rows:
        r["dropped"] = 0 if prev is None else prev - r["docs"]
        r["kept_pct"] = round(100.0 * r["docs"] / rows[0]["docs"], 2) if rows[0]["docs"] else 0.0
        prev = r["docs"]
    return rows


def _write_side_table(store: ArtifactStore, out, name: str, table: pa.Table) -> None:
    with tempfile.TemporaryDirectory(prefix="primer-curate-") as tmp:
        local = Path(tmp) / "t"
        pq.write_table(table, local, compression="zstd")
        out.commit_file(local, name)


# ------------------------------------------------------------------------------------------- flow


@flow(name="curate")
def curate(profile: str = "tiny", overrides: dict[str, Any] | None = None) -> str:
    """Curate the configured sources; returns the URI of the output (a StageOutput with manifest.json)."""
    cfg = load_config(profile, overrides)
    c = cfg.curate
    c.mbpp_path = c.mbpp_path or os.environ.get(MBPP_ENV, "")  # the same fallback as evaluate
    log = _logger()
    store = open_store(cfg.store)
    sources = stages.resolve_sources(c, cfg.store)
    inputs = [s.fingerprint for s in sources]
    mbpp_fp = ""
    if c.decontaminate and c.mbpp_path:
        from tasks.curate.decontam import load_mbpp

        mbpp_fp = content_key([(i.task_id, i.code) for i in load_mbpp(c.mbpp_path, cfg.store)], length=32)
    elif c.decontaminate:
        log.info("curate.mbpp_path is empty: decontaminating against HumanEval only (MBPP skipped)")
    section = dataclasses.asdict(c)
    teacher_part = dataclasses.asdict(cfg.teacher) if c.annotator == "teacher" or c.embedder == "endpoint" else None
    if teacher_part:  # only what changes answers
        teacher_part = {k: teacher_part.get(k) for k in ("base_url", "model", "api", "temperature", "top_p", "seed")}
    key = content_key(stages.STAGE_VERSION, section, inputs, mbpp_fp, teacher_part)
    out = store.output("curate", key)
    if out.is_complete():
        log.info(f"curate: reusing complete output {out.uri}")
        dashboard.link("curate-output", out.uri, "curated documents (reused)")
        return out.uri
    work = Work(store, key)
    t0 = time.time()
    plans = stages.plan_shards(c, sources, cfg.store)
    log.info(f"curate: {len(sources)} source(s), {len(plans)} shard(s), key {key}")

    # 1. filters + signatures, per shard
    shard_stats = filter_shard.map(plans, unmapped(c), unmapped(cfg.store), unmapped(key)).result()
    t_filter = time.time() - t0
    shards = [p.index for p in plans]
    # 2. global dedup: per hash partition, then once
    t1 = time.time()
    bucket_stats = dedup_bucket.map(list(range(c.dedup_buckets)), unmapped(shards), unmapped(key),
                                    unmapped(cfg.store)).result()
    dedup_summary = dedup_cluster(shards, c, key, cfg.store)
    t_dedup = time.time() - t1
    # 3. annotations + classifier
    t2 = time.time()
    classifier: dict[str, Any] | None = None
    annotations: dict[str, Any] = {"rows": [], "annotator": c.annotator}
    if c.annotate_n > 0:
        annotations = annotate_sample(cfg, key, shard_stats)
        classifier = train_classifier(cfg, key, annotations)
    t_quality = time.time() - t2
    per_shard_ann: dict[int, dict[int, float]] = {s: {} for s in shards}
    for r in annotations["rows"]:
        if r["score"] is not None:
            per_shard_ann[r["shard"]][r["row"]] = float(r["score"])
    # 4. quality filter + decontamination + write, per shard
    t3 = time.time()
    final_stats = finalize_shard.map(
        shards, unmapped(c), unmapped(cfg.store), unmapped(key), unmapped(out.uri),
        unmapped(classifier["model_key"] if classifier else None), [per_shard_ann[s] for s in shards],
        unmapped(cfg.teacher)).result()
    t_final = time.time() - t3

    # 5. side tables, stats, manifest (last)
    for st in final_stats:
        for f in st["files"]:
            out.files.append(FileRecord(name=f["name"], bytes=f["bytes"], sha256=f["sha256"]))
    ann_schema = pa.schema([("id", pa.string()), ("source", pa.string()), ("sha256", pa.string()),
                            ("score", pa.float32()), ("educational", pa.bool_()), ("annotator", pa.string()),
                            ("rationale", pa.string()), ("error", pa.string())])
    _write_side_table(store, out, f"annotations{stages.SIDE_EXT}",
                      pa.Table.from_pylist([{k: r.get(k) for k in ann_schema.names} for r in annotations["rows"]],
                                           schema=ann_schema))
    funnel = funnel_rows(shard_stats, final_stats)
    drops: dict[str, int] = {}
    for st in final_stats:
        for reason, n in st["drops"].items():
            drops[reason] = drops.get(reason, 0) + n
    docs = sum(st["docs"] for st in final_stats)
    n_in = funnel[0]["docs"] if funnel else 0
    timings = {"filter": round(t_filter, 3), "dedup": round(t_dedup, 3), "annotate+classifier": round(t_quality, 3),
               "quality+decontamination+write": round(t_final, 3), "total": round(time.time() - t0, 3)}
    ann_failed = sum(1 for r in annotations["rows"] if r["score"] is None)
    stats = {"funnel": funnel, "drops": dict(sorted(drops.items())), "dedup": dedup_summary,
             "dedup_buckets": bucket_stats, "timings_s": timings,
             "annotations": {"annotator": annotations["annotator"], "n": len(annotations["rows"]),
                             "without_score": ann_failed, "usage": annotations.get("usage")},
             "classifier": classifier, "shards": len(plans),
             "resumed": {"filter": sum(1 for st in shard_stats if st.get("resumed")),
                         "finalize": sum(1 for st in final_stats if st.get("resumed"))},
             "contamination_hits": sum(st["contamination_hits"] for st in final_stats)}
    out.write_json("stats.json", stats)
    data_files = sorted(f["name"] for st in final_stats for f in st["files"] if f["name"].startswith("data/"))
    out.commit({
        "what": "curated documents", "stage_version": stages.STAGE_VERSION, "documents": docs,
        "bytes": sum(st["bytes"] for st in final_stats), "data_files": data_files,
        "columns": stages.DOC_SCHEMA.names, "sources": [s.as_record() for s in sources], "inputs": inputs,
        "mbpp_fingerprint": mbpp_fp, "config": section, "config_fingerprint": content_key(section),
        "drops": stats["drops"], "funnel": funnel,
        "classifier": {k: classifier[k] for k in ("model_key", "sha256", "uri")} if classifier else None,
        "layout": {"documents": "data/*.parquet", "exclusions": f"exclusions/*{stages.SIDE_EXT}",
                   "contamination": f"contamination/*{stages.SIDE_EXT}",
                   "annotations": f"annotations{stages.SIDE_EXT}", "stats": "stats.json"},
    })
    if not c.keep_work:
        try:
            store.fs.rm(store.to_path(work.uri), recursive=True)
        except FileNotFoundError:
            pass
    # dashboard
    dashboard.table("curate-funnel", funnel, description=f"curate {key}: documents and bytes through each step")
    dashboard.table("curate-drops", [{"reason": k, "documents": v} for k, v in stats["drops"].items()],
                    description="Excluded documents by reason (details in exclusions/)")
    dashboard.markdown("curate-summary", (
        f"### curate `{key}`\n\n{docs} of {n_in} documents kept "
        f"({100.0 * docs / max(1, n_in):.1f}%), {len(plans)} shards, {timings['total']:.1f} s.\n\n"
        f"Output: `{out.uri}`\n\n" + dashboard.markdown_table(funnel)))
    dashboard.link("curate-output", out.uri, "curated documents")
    log.info(f"curate: {docs}/{n_in} documents kept -> {out.uri} ({timings['total']:.1f} s)")
    return out.uri


if __name__ == "__main__":  # pragma: no cover
    import sys

    print(curate(sys.argv[1] if len(sys.argv) > 1 else "tiny"))
