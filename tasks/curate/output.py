"""Close the curate output: side tables, stats.json and the manifest (written last), through `StageOutput`.

What goes where, so that two runs on the same input give the same content hash:

* files (hashed into the content hash): the documents (`data/part-*.parquet`), exclusions, contamination
  evidence, the annotation sample and `stats.json` — only facts that follow from the input and the
  settings (funnel, drops, dedup counts, classifier key/sha256/metrics, label balance);
* the manifest's `run` section (not hashed): timings, resumed units, whether the classifier was reused,
  the teacher's usage — facts about this run.

A run that keeps no document fails here with the drop counts instead of publishing an empty output.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from primer.config import PrimerConfig
from primer.store import content_key, open_store
from tasks.curate.annotate import label_balance
from tasks.curate.stages import DATASET, DOC_SCHEMA, SIDE_EXT, STAGE_VERSION, RunPlan, require_documents
from tasks.curate.work import Work

ANNOTATION_SCHEMA = pa.schema([("id", pa.string()), ("source", pa.string()), ("sha256", pa.string()),
                               ("score", pa.float32()), ("educational", pa.bool_()), ("annotator", pa.string()),
                               ("rationale", pa.string()), ("error", pa.string())])


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


def total_drops(final_stats: list[dict[str, Any]]) -> dict[str, int]:
    drops: dict[str, int] = {}
    for st in final_stats:
        for reason, n in st["drops"].items():
            drops[reason] = drops.get(reason, 0) + n
    return dict(sorted(drops.items()))


def _write_table(out, name: str, table: pa.Table) -> None:
    with tempfile.TemporaryDirectory(prefix="primer-curate-") as tmp:
        local = Path(tmp) / "t.parquet"
        pq.write_table(table, local, compression="zstd")
        out.commit_file(local, name)


def write_output(cfg: PrimerConfig, run: RunPlan, shard_stats: list[dict[str, Any]],
                 bucket_stats: list[dict[str, Any]], dedup: dict[str, Any], annotations: dict[str, Any],
                 classifier: dict[str, Any] | None, final_stats: list[dict[str, Any]],
                 timings: dict[str, float]) -> dict[str, Any]:
    """Commit annotations, stats.json and the manifest of `curate/<key>`; remove the work area."""
    store = open_store(cfg.store)
    out = store.output("curate", run.key)
    funnel = funnel_rows(shard_stats, final_stats)
    n_in = funnel[0]["docs"] if funnel else 0
    require_documents([st["docs"] for st in final_stats], n_in, total_drops(final_stats))
    for st in final_stats:  # files the finalize units committed to this output
        out.files.extend(_records(st["files"]))
    rows = [{k: r.get(k) for k in ANNOTATION_SCHEMA.names} for r in annotations["rows"]]
    _write_table(out, f"annotations{SIDE_EXT}", pa.Table.from_pylist(rows, schema=ANNOTATION_SCHEMA))
    drops = total_drops(final_stats)
    docs = sum(st["docs"] for st in final_stats)
    balance = label_balance(annotations)
    model = {k: classifier[k] for k in ("model_key", "sha256", "ref", "metrics")} if classifier else None
    stats = {"funnel": funnel, "drops": drops, "shards": len(run.plans),
             "dedup": {k: v for k, v in dedup.items() if k != "seconds"},
             "dedup_buckets": [{k: v for k, v in b.items() if k != "resumed"} for b in bucket_stats],
             "annotations": {"annotator": annotations["annotator"], "n": len(annotations["rows"]),
                             "label_threshold": cfg.curate.label_threshold, **balance},
             "classifier": model,
             "contamination_hits": sum(st["contamination_hits"] for st in final_stats)}
    out.write_json("stats.json", stats)
    data_files = sorted(f["name"] for st in final_stats for f in st["files"] if f["name"].startswith("data/"))
    run_facts = {"timings_s": timings,
                 "resumed": {"filter": sum(1 for st in shard_stats if st.get("resumed")),
                             "finalize": sum(1 for st in final_stats if st.get("resumed"))},
                 "classifier_reused": bool(classifier and classifier.get("reused")),
                 "annotation_usage": annotations.get("usage")}
    manifest = out.commit({
        "what": "curated documents", "stage_version": STAGE_VERSION, "documents": docs,
        "bytes": sum(st["bytes"] for st in final_stats),
        "datasets": {DATASET: {"files": data_files, "format": "parquet", "text_column": "text",
                               "columns": DOC_SCHEMA.names}},
        "sources": [s.as_record() for s in run.sources], "inputs": [s.fingerprint for s in run.sources],
        "mbpp_fingerprint": run.mbpp_fingerprint, "config": run.settings,
        "config_fingerprint": content_key(run.settings), "drops": drops, "funnel": funnel,
        "annotations": stats["annotations"],
        "classifier": {k: model[k] for k in ("model_key", "sha256", "ref")} if model else None,
        "layout": {"exclusions": f"exclusions/*{SIDE_EXT}", "contamination": f"contamination/*{SIDE_EXT}",
                   "annotations": f"annotations{SIDE_EXT}", "stats": "stats.json"},
        "run": run_facts,
    })
    if not cfg.curate.keep_work:
        Work(store, run.key).remove()
    return manifest


def _records(files: list[dict[str, Any]]):
    from primer.store import FileRecord

    return [FileRecord(name=f["name"], bytes=f["bytes"], sha256=f["sha256"]) for f in files]
