"""Annotate a seeded sample of dedup survivors with their educational value (phi-1 used GPT-4 this way).

`make_annotator` picks the annotator named by `curate.annotator` (the offline `heuristic.py` rubric or the
`teacher_annotator.py` endpoint); `annotate_sample` is the stage unit: pick the sample, label it, keep the
result in the work area so a re-run reuses it. Prefect-free; `prefect_tasks.py` declares it as a task.
"""

from __future__ import annotations

from typing import Any

from primer.settings.curate import CurateConfig
from primer.store import open_store
from tasks.curate.annotation import Annotator
from tasks.curate.heuristic import HeuristicAnnotator
from tasks.curate.work import Work, fetch_docs, load_removed, pick_sample


def make_annotator(cfg: CurateConfig, teacher_cfg: Any = None, store: Any = None, progress: Any = None) -> Annotator:
    """The annotator named by `curate.annotator` (`progress`: the teacher's callback, see primer.teacher)."""
    if cfg.annotator == "heuristic":
        return HeuristicAnnotator()
    from tasks.curate.teacher_annotator import TeacherAnnotator  # needs the teacher client: only when asked

    return TeacherAnnotator(cfg, teacher_cfg, store, progress=progress)


def annotate_sample(cfg: CurateConfig, teacher_cfg: Any, store_cfg: Any, key: str,
                    shard_stats: list[dict[str, Any]], progress: Any = None) -> dict[str, Any]:
    """Label the `annotate_n` dedup survivors with the smallest sample keys; reused from the work area.

    Returns {"rows": [...], "annotator": name, "usage": teacher usage or None}. Rows are in sample order
    (content-derived), so the same input gives the same rows in every run.
    """
    store = open_store(store_cfg)
    work = Work(store, key)
    marker = work.at("annotate", "_SUCCESS.json")
    done = work.marker(marker)
    if done is not None:
        return done
    removed = {st["shard"]: set(load_removed(store, work, st["shard"])) for st in shard_stats}
    picks = pick_sample(shard_stats, removed, cfg.annotate_n)
    docs = fetch_docs(store, work, picks)
    annotator = make_annotator(cfg, teacher_cfg, store, progress)
    answers = annotator.annotate([d["text"] for d in docs], [d["sha256"] for d in docs])
    rows = [{"id": d["id"], "source": d["source"], "sha256": d["sha256"], "shard": d["shard"], "row": d["row"],
             "score": a.score, "educational": None if a.score is None else bool(a.score >= cfg.label_threshold),
             "annotator": annotator.name, "rationale": a.rationale[:500], "error": a.error}
            for d, a in zip(docs, answers)]
    result = {"rows": rows, "annotator": annotator.name, "usage": getattr(annotator, "usage", None)}
    store.write_json(marker, result)
    return result


def label_balance(annotations: dict[str, Any]) -> dict[str, int]:
    """How many annotations fell on each side of the threshold (and how many had no usable score)."""
    rows = annotations["rows"]
    return {"educational": sum(1 for r in rows if r["educational"] is True),
            "low": sum(1 for r in rows if r["educational"] is False),
            "without_score": sum(1 for r in rows if r["score"] is None)}
