"""The synthesize stage's units as plain functions (Prefect tasks: tasks/synth/prefect_tasks.py; the order
they run in: flows/synthesize.py).

Phases: prepare (skip? reuse?) -> expand topics -> textbooks -> exercises -> verify -> variants -> write.
Every teacher call goes through one ledger (`ledgers/<synth.ledger>/`), so a killed run resumes without
paying twice, and a budget stop keeps everything answered so far.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from dataclasses import asdict
from typing import Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq

from primer import dashboard
from primer.config import PrimerConfig, fingerprint_fields
from primer.store import ArtifactStore, content_key, open_store
from primer.teacher.accounting import accounting as teacher_accounting
from primer.teacher.accounting import rows as accounting_rows
from primer.teacher import (BUDGET_EXHAUSTED, Ledger, Teacher, TeacherAnswer, TeacherRequest, TeacherUsage,
                            open_teacher)
from tasks.synth.decontaminate import decontaminate_outputs
from tasks.synth import prompts as P
from tasks.synth import seeds as S
from tasks.synth.quality import dedup, diversity_report, near_duplicate_rate
from tasks.synth.validate import normalize_ws, parse_exercise, validate_textbook
from tasks.synth.verify import verify_programs

log = logging.getLogger("primer.synth")
STAGE = "synthesize"
STAGE_VERSION = 1
TEXTBOOK_SOURCE = "synthetic_textbook"
EXERCISE_SOURCE = "synthetic_exercise"

TEXTBOOK_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("source", pa.string()),
                             ("topic", pa.string()), ("chapter", pa.string()), ("audience", pa.string()),
                             ("style", pa.string()), ("model", pa.string()), ("request_key", pa.string()),
                             ("seed", pa.string())])   # id of the curated document a seeded prompt quoted, else ""
EXERCISE_SCHEMA = pa.schema([("id", pa.string()), ("prompt", pa.string()), ("solution", pa.string()),
                             ("tests", pa.string()), ("verified", pa.bool_()), ("failure_reason", pa.string()),
                             ("failure_detail", pa.string()), ("topic", pa.string()), ("text", pa.string()),
                             ("source", pa.string()), ("function_name", pa.string()), ("variant_of", pa.string()),
                             ("model", pa.string()), ("request_key", pa.string())])
DROP_SCHEMA = pa.schema([("id", pa.string()), ("kind", pa.string()), ("topic", pa.string()),
                         ("reason", pa.string()), ("detail", pa.string())])


def generation_fingerprint(cfg: PrimerConfig) -> dict[str, Any]:
    """The teacher fields that change what is generated (not the endpoint, concurrency or retries)."""
    t = cfg.teacher
    return {"model": t.model, "api": t.api, "sampling": t.sampling(), "max_tokens_total": t.max_tokens_total,
            "max_cost_usd": t.max_cost_usd, "price": t.price() if t.max_cost_usd else None}


def prepare(cfg: PrimerConfig) -> dict[str, Any]:
    """Skip reason, or the content key and inputs; reuses a complete output with the same key."""
    if not cfg.synth.enabled:
        return {"skip": "synth.enabled is false"}
    reason = cfg.teacher.skip_reason()
    if reason:
        return {"skip": reason}
    topics, topics_sha = P.load_topic_tree(cfg.synth.topics_file, cfg.store)
    pools, pools_sha = P.load_exercise_topics(cfg.synth.exercise_topics_file, cfg.store)
    seed = S.resolve_seed_source(cfg)   # None unless seed_fraction > 0; a bad seed_source fails here
    key = content_key(STAGE, STAGE_VERSION, fingerprint_fields(cfg.synth.content_fields()),
                      generation_fingerprint(cfg), topics_sha, pools_sha,
                      dataclasses.asdict(cfg.evaluate.contamination),  # decontamination decides what is kept
                      *([seed["fingerprint"]] if seed else []))     # the curated documents quoted
    store = open_store(cfg.store)
    out = store.output(STAGE, key)
    if out.is_complete():
        manifest = out.read_manifest()
        if not manifest.get("partial"):
            return {"reuse": out.uri, "key": key, "manifest": manifest, "topics": topics, "pools": pools,
                    "seed": seed}
    return {"key": key, "topics": topics, "pools": pools, "topics_sha": topics_sha, "pools_sha": pools_sha,
            "seed": seed}


def plan_requests(cfg: PrimerConfig, topics: list[P.Topic], pools: dict[str, list[str]],
                  seed: dict[str, Any] | None = None) -> str:
    """The plan as markdown (also published as the `synthesize-plan` artifact); sends nothing."""
    from tasks.synth.plan import build_plan, render

    teacher = make_teacher(cfg)
    p, c = teacher.ledger.totals()
    text = render(build_plan(cfg, topics, pools, p + c, teacher.ledger_cost(), seed=seed))
    dashboard.markdown("synthesize-plan", text, description="Synthesize: requests, tokens, cost and budget")
    log.info("%s", text)
    return text


def write_skipped(cfg: PrimerConfig, reason: str) -> str:
    """Close a small "skipped" output (downstream reads `read_output(uri).skipped`); returns its URI.
    Its key hashes the synth config and the reason, so a later configured run never collides with it."""
    key = content_key(STAGE, STAGE_VERSION, "skipped", fingerprint_fields(cfg.synth.content_fields()), reason)
    out = open_store(cfg.store).output(STAGE, key)
    if not out.is_complete():
        out.commit_skipped(reason, version=STAGE_VERSION)
    log.warning("synthesize skipped: %s", reason)
    dashboard.markdown("synthesize-skipped", f"# Synthesize skipped\n\n{reason}\n")
    return out.uri


def make_teacher(cfg: PrimerConfig, store: ArtifactStore | None = None) -> Teacher:
    store = store or open_store(cfg.store)
    ledger = Ledger(store, cfg.synth.ledger, commit_every=cfg.teacher.ledger_commit_every,
                    commit_interval_s=cfg.teacher.ledger_commit_interval_s,
                    journal_dir=cfg.teacher.journal_dir or None)
    return open_teacher(cfg.teacher, ledger)   # online, or the Batch API for teacher.mode=batch


def _drop(rid: str, kind: str, topic: str, reason: str, detail: str = "") -> dict[str, str]:
    return {"id": rid, "kind": kind, "topic": topic, "reason": reason, "detail": detail[:500]}


def _answer_drop(answer: Any) -> str:
    return "not_sent_budget" if answer.error == BUDGET_EXHAUSTED else "teacher_error"


# ---- phases --------------------------------------------------------------------------------------------

Progress = Callable[[Any], None] | None   # gets a primer.teacher.TeacherProgress after each answer
# How a phase gets its answers: (cfg, phase, requests, progress) -> (one answer per request, in order;
# the TeacherUsage as a dict). `answer_requests` here, in one process; the flow maps the requests in
# batches on the stage's task runner (tasks/synth/prefect_tasks.py `send_mapped`).
Send = Callable[[PrimerConfig, str, list[TeacherRequest], Progress], tuple[list[TeacherAnswer], dict[str, Any]]]
Verify = Callable[[PrimerConfig, list[dict[str, Any]]], list[dict[str, Any]]]


def answer_requests(cfg: PrimerConfig, phase: str, requests: list[TeacherRequest],
                    progress: Progress = None) -> tuple[list[TeacherAnswer], dict[str, Any]]:
    """Answer `requests` through the ledger (nothing paid twice), one Teacher built here: also the unit
    the flow maps, so it runs wherever the task runner puts it."""
    teacher = make_teacher(cfg)
    teacher.phase = phase
    answers = teacher.run_sync(requests, progress)
    return answers, asdict(teacher.last_run)


def expand_topics(cfg: PrimerConfig, topics: list[P.Topic], progress: Progress = None,
                  send: Send = answer_requests) -> dict[str, Any]:
    """Seed topics, or the teacher's topic tree: each level of `synth.fanout()` asks for that many
    subtopics of every node of the level above (a node with none stays a leaf). Leaves are deduplicated by
    normalised name, so the plan counts distinct topics."""
    fanout = cfg.synth.fanout()
    if not fanout:
        return {"topics": topics, "usage": asdict(TeacherUsage()), "drops": []}
    teacher = make_teacher(cfg)   # builds the requests (sampling, ledger keys); `send` answers them
    usage, drops, level, seen = TeacherUsage(), [], [], set()
    for t in topics:   # duplicate seed names expand once
        norm = " ".join(P.normalize_topic(t.name))
        if norm not in seen:
            seen.add(norm)
            level.append(t)
    for k in fanout:
        reqs = [teacher.request(P.subtopic_messages(t, k), meta={"topic": t.label}) for t in level]
        answers, used = send(cfg, "topics", reqs, progress)
        usage.add(TeacherUsage(**used))
        nxt: list[P.Topic] = []
        for t, a in zip(level, answers):
            subs = P.parse_subtopics(a.text, k) if a.ok else []
            fresh = []
            for sub in subs:
                norm = " ".join(P.normalize_topic(sub))
                if norm not in seen:
                    seen.add(norm)
                    fresh.append(P.Topic(t.chapter, sub, parent=t.name))
            if subs and not fresh:   # everything it offered is already in the tree: covered elsewhere
                drops.append(_drop(f"topic-{a.key[:16]}", "topic", t.label, "duplicate_subtopics"))
            elif not fresh:
                drops.append(_drop(f"topic-{a.key[:16]}", "topic", t.label,
                                   "no_subtopics" if a.ok else _answer_drop(a), a.error or (a.text or "")[:200]))
                nxt.append(t)
            nxt += fresh
        level = nxt
    return {"topics": level, "usage": asdict(usage), "drops": drops}


def generate_textbooks(cfg: PrimerConfig, topics: list[P.Topic], seed: dict[str, Any] | None = None,
                       progress: Progress = None, send: Send = answer_requests) -> dict[str, Any]:
    """Textbook sections: topic x audience x style prompts, and with `seed` (`prepare`'s resolved
    synth.seed_source) a seed_fraction share of prompts quoting curated code extracts (tasks/synth/seeds.py)."""
    s = cfg.synth
    n = -(-s.textbook_tokens // s.tokens_per_textbook) if s.textbook_tokens else s.textbooks
    wanted = S.seeded_count(n, s.seed_fraction, seed.get("documents")) if seed else 0
    extracts = S.select_extracts(cfg, seed, wanted) if wanted else []
    plain = P.textbook_plan(topics, s.audiences, s.styles, n - len(extracts), s.seed)
    plan = S.interleave(plain, S.seeded_items(extracts, s.audiences, s.styles, s.seed))
    teacher = make_teacher(cfg)
    reqs = [teacher.request(P.textbook_messages(item), sample_index=item["sample_index"]) for item in plan]
    answers, used = send(cfg, "textbooks", reqs, progress)
    rows, drops, failed = [], [], 0
    for item, a in zip(plan, answers):
        rid, topic = f"tb-{a.key[:16]}", item["topic"].label
        if not a.ok:
            failed += a.error != BUDGET_EXHAUSTED
            drops.append(_drop(rid, "textbook", topic, _answer_drop(a), a.error or ""))
            continue
        v = validate_textbook(a.text, a.finish_reason, min_chars=s.min_chars, max_chars=s.max_chars,
                              min_code_blocks=s.min_code_blocks)
        if not v.ok:
            drops.append(_drop(rid, "textbook", topic, v.reason, v.detail))
            continue
        rows.append({"id": rid, "text": v.text, "source": TEXTBOOK_SOURCE, "topic": topic,
                     "chapter": item["topic"].chapter, "audience": item["audience"], "style": item["style"],
                     "model": cfg.teacher.model, "request_key": a.key,
                     "seed": item["seed"]["id"] if item.get("seed") else ""})
    near = near_duplicate_rate([r["text"] for r in rows])   # of what the teacher wrote (valid), before dedup
    kept, dups = dedup(rows, s.dedup_threshold)
    drops += [_drop(r["id"], "textbook", r["topic"], reason, f"duplicates {other}") for r, reason, other in dups]
    seeding = None if not seed else {
        "seed_source": seed["seed_source"], "uri": seed["uri"], "dataset": seed["dataset"],
        "fingerprint": seed["fingerprint"], "fraction": s.seed_fraction, "extract_chars": s.seed_extract_chars,
        "wanted": wanted, "requests": len(extracts)}
    return {"rows": kept, "drops": drops, "usage": used, "failed": failed,
            "topics_requested": sorted({i["topic"].label for i in plain}), "seeding": seeding,
            "near_duplicates": near}


def _exercise_row(cfg: PrimerConfig, ex: Any, key: str, topic: str, prefix: str = "ex",
                  variant_of: str = "") -> dict[str, Any]:
    return {"id": f"{prefix}-{key[:16]}", "prompt": ex.prompt, "solution": ex.solution, "tests": ex.tests,
            "verified": False, "failure_reason": "not_verified", "failure_detail": "", "topic": topic,
            "text": ex.program, "source": EXERCISE_SOURCE, "function_name": ex.function_name,
            "variant_of": variant_of, "model": cfg.teacher.model, "request_key": key}


def generate_exercises(cfg: PrimerConfig, pools: dict[str, list[str]],
                       leaves: list[P.Topic] | None = None, progress: Progress = None,
                       send: Send = answer_requests) -> dict[str, Any]:
    if cfg.synth.exercise_topics_from_tree and leaves:   # more distinct exercise prompts at scale
        pools = {**pools, "topics": list(dict.fromkeys(pools["topics"] + [t.name for t in leaves]))}
    n = -(-cfg.synth.exercise_tokens // cfg.synth.tokens_per_exercise) if cfg.synth.exercise_tokens else cfg.synth.exercises
    plan = P.exercise_plan(pools, n, cfg.synth.seed)
    teacher = make_teacher(cfg)
    reqs = [teacher.request(P.exercise_messages(item), sample_index=item["sample_index"]) for item in plan]
    answers, used = send(cfg, "exercises", reqs, progress)
    rows, drops, failed = [], [], 0
    for item, a in zip(plan, answers):
        if not a.ok:
            failed += a.error != BUDGET_EXHAUSTED
            drops.append(_drop(f"ex-{a.key[:16]}", "exercise", item["topic"], _answer_drop(a), a.error or ""))
            continue
        ex, reason, detail = parse_exercise(a.text, a.finish_reason, item["function_name"])
        if ex is None:
            drops.append(_drop(f"ex-{a.key[:16]}", "exercise", item["topic"], reason, detail))
            continue
        rows.append(_exercise_row(cfg, ex, a.key, item["topic"]))
    return {"rows": rows, "drops": drops, "usage": used, "failed": failed,
            "topics_requested": sorted({i["topic"] for i in plan})}


def verify_exercises(cfg: PrimerConfig, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Set verified / failure_reason / failure_detail on each row by running its tests in the sandbox."""
    if not cfg.synth.verify:
        return [{**r, "verified": False, "failure_reason": "not_verified"} for r in rows]
    results = verify_programs([(r["text"], r["tests"]) for r in rows], timeout_s=cfg.synth.verify_timeout_s)
    return [{**r, "verified": ok, "failure_reason": reason, "failure_detail": detail}
            for r, (ok, reason, detail) in zip(rows, results)]


def generate_variants(cfg: PrimerConfig, rows: list[dict[str, Any]], pools: dict[str, list[str]],
                      progress: Progress = None, send: Send = answer_requests,
                      verify: Verify | None = None) -> dict[str, Any]:
    """Semantics-preserving rewrites of verified exercises; each is re-verified by running its tests
    (`verify`, default `verify_exercises`)."""
    n = cfg.synth.variants_per_exercise
    base = [r for r in rows if r["verified"] and not r["variant_of"]]
    if n <= 0 or not base:
        return {"rows": [], "drops": [], "usage": asdict(TeacherUsage()), "failed": 0}
    teacher = make_teacher(cfg)
    plan = [(r, P.variant_name(r["function_name"], i, pools, cfg.synth.seed)) for r in base for i in range(n)]
    reqs = [teacher.request(P.variant_messages(r, name)) for r, name in plan]
    answers, used = send(cfg, "variants", reqs, progress)
    out, drops, failed = [], [], 0
    for (r, name), a in zip(plan, answers):
        rid = f"exv-{a.key[:16]}"
        if not a.ok:
            failed += a.error != BUDGET_EXHAUSTED
            drops.append(_drop(rid, "variant", r["topic"], _answer_drop(a), a.error or ""))
            continue
        ex, reason, detail = parse_exercise(a.text, a.finish_reason, name)
        if ex is None:
            drops.append(_drop(rid, "variant", r["topic"], reason, detail))
            continue
        out.append(_exercise_row(cfg, ex, a.key, r["topic"], prefix="exv", variant_of=r["id"]))
    return {"rows": (verify or verify_exercises)(cfg, out), "drops": drops, "usage": used, "failed": failed}


# ---- output --------------------------------------------------------------------------------------------

def _merge_usage(parts: list[dict[str, Any]]) -> TeacherUsage:
    total = TeacherUsage()
    for p in parts:
        total.add(TeacherUsage(**p))   # the latest phase that stopped gives stopped/reserved/spent_at_stop
    return total


def _write_parquet(out: Any, name: str, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    table = pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows], schema=schema)
    with out.open_local(name) as local:
        pq.write_table(table, local, compression="zstd")


def _samples_markdown(textbooks: list[dict], exercises: list[dict], drops: list[dict], n: int,
                      usage: TeacherUsage, model: str) -> str:
    lines = [f"# Synthesize: samples ({model})", ""]
    if usage.stopped:
        lines += [f"> **Stopped early:** {usage.stopped}", ""]
    lines += ["## Textbook sections", ""]
    for r in textbooks[:n]:
        body = r["text"] if len(r["text"]) <= 1500 else r["text"][:1500] + "\n…"
        lines += [f"### {r['topic']} — for {r['audience']} ({r['style']})", "", body, ""]
    lines += ["## Exercises", ""]
    for r in exercises[:n]:
        flag = "verified" if r["verified"] else f"NOT verified ({r['failure_reason']})"
        lines += [f"### `{r['function_name']}` — {r['topic']} — {flag}", "", "```python", r["text"], "```", "",
                  "Tests:", "", "```python", r["tests"], "```", ""]
    counts = Counter((d["kind"], d["reason"]) for d in drops)
    lines += ["## Dropped", "", dashboard.markdown_table(
        [{"kind": k, "reason": r, "count": c} for (k, r), c in sorted(counts.items())])]
    return "\n".join(lines)


def write_output(cfg: PrimerConfig, key: str, inputs: dict[str, str], textbooks: dict[str, Any],
                 exercises: dict[str, Any], variants: dict[str, Any], topics_phase: dict[str, Any]) -> dict[str, Any]:
    store = open_store(cfg.store)
    out = store.output(STAGE, key)
    if out.is_complete():  # a partial output being redone: the old manifest goes first
        store.fs.rm(store.to_path(out.manifest_uri))
    out.clean_partial()
    ex_rows, ex_drops = exercises["rows"] + variants["rows"], []
    if not cfg.synth.keep_unverified and cfg.synth.verify:
        ex_drops = [_drop(r["id"], "exercise", r["topic"], f"unverified:{r['failure_reason']}", r["failure_detail"])
                    for r in ex_rows if not r["verified"]]
        ex_rows = [r for r in ex_rows if r["verified"]]
    ex_rows, dups = dedup(ex_rows, cfg.synth.dedup_threshold, key=lambda r: normalize_ws(r["text"]))
    ex_drops += [_drop(r["id"], "exercise", r["topic"], reason, f"duplicates {other}") for r, reason, other in dups]
    # benchmark decontamination (issue 15): close copies of HumanEval/MBPP go, with evidence in exclusions.parquet
    kept, decontamination = decontaminate_outputs(cfg, out, {"textbooks": textbooks["rows"], "exercises": ex_rows})
    textbooks, ex_rows = {**textbooks, "rows": kept["textbooks"]}, kept["exercises"]
    drops = topics_phase["drops"] + textbooks["drops"] + exercises["drops"] + variants["drops"] + ex_drops
    phases = {"topics": topics_phase["usage"], "textbooks": textbooks["usage"], "exercises": exercises["usage"],
              "variants": variants["usage"]}
    usage = _merge_usage(list(phases.values()))
    ledger_p, ledger_c = make_teacher(cfg, store).ledger.totals()   # the whole ledger, read now (not a phase's)
    usage.ledger_tokens = ledger_p + ledger_c
    usage.ledger_cost_usd = make_teacher(cfg, store).ledger_cost()   # each answer at its mode's price
    accounting = teacher_accounting(cfg.teacher, phases, usage.ledger_tokens, usage.ledger_cost_usd,
                                    usage.reserved_tokens, usage.reserved_cost_usd, usage.spent_at_stop)
    failed = textbooks.get("failed", 0) + exercises.get("failed", 0) + variants.get("failed", 0)
    seeding = textbooks.get("seeding") and {   # how many textbooks kept quote curated code, and from where
        **textbooks["seeding"], "textbooks": sum(1 for r in textbooks["rows"] if r.get("seed"))}
    diversity = {"textbooks": diversity_report(textbooks["rows"], textbooks.get("topics_requested", [])),
                 "exercises": diversity_report(ex_rows, exercises.get("topics_requested", []))}
    # MinHash near-duplicate rate of the textbooks: as generated (valid answers, before dedup) and as kept
    generated = textbooks.get("near_duplicates") or near_duplicate_rate([])
    kept_near = near_duplicate_rate([r["text"] for r in textbooks["rows"]])
    diversity["textbooks"]["near_duplicates"] = {"generated": generated, "kept": kept_near}
    near_dup = {"textbook_near_dup_rate": generated["rate"], "textbook_near_dup_pairs": generated["pairs"],
                "textbooks_generated": generated["documents"], "textbook_near_dup_rate_kept": kept_near["rate"],
                **{k: generated[k] for k in ("threshold", "num_perm", "shingle_size", "method")}}

    _write_parquet(out, "textbooks.parquet", textbooks["rows"], TEXTBOOK_SCHEMA)
    _write_parquet(out, "exercises.parquet", ex_rows, EXERCISE_SCHEMA)
    _write_parquet(out, "dropped.parquet", drops, DROP_SCHEMA)
    out.write_json("diversity.json", diversity)
    samples = _samples_markdown(textbooks["rows"], ex_rows, drops, cfg.synth.samples, usage, cfg.teacher.model)
    with out.open_local("samples.md") as local:
        local.write_text(samples)

    manifest = out.commit({
        "version": STAGE_VERSION,
        "config": {"synth": dataclasses.asdict(cfg.synth), "teacher": generation_fingerprint(cfg)},
        "inputs": inputs,
        "datasets": {   # the hand-off contract: what other stages may read, and how
            "textbooks": {"files": ["textbooks.parquet"], "format": "parquet", "text_column": "text",
                          "rows": len(textbooks["rows"]), "source": TEXTBOOK_SOURCE},
            "exercises": {"files": ["exercises.parquet"], "format": "parquet", "text_column": "text",
                          "prompt_column": "prompt", "keep_if": "verified", "rows": len(ex_rows), "source": EXERCISE_SOURCE,
                          "verified": sum(r["verified"] for r in ex_rows)},
        },
        "tables": {"dropped": {"file": "dropped.parquet", "rows": len(drops)}},
        "accounting": accounting,
        "drops": dict(Counter(f"{d['kind']}:{d['reason']}" for d in drops)),
        "decontamination": decontamination,
        "seeding": seeding,
        "diversity": near_dup,
        "teacher_usage": asdict(usage),
        "stopped": usage.stopped,
        "teacher_failures": failed,
        "partial": failed > 0,   # transient teacher failures: a re-run retries them instead of reusing this
    })
    publish(cfg, manifest, usage, diversity, samples)
    return manifest


def publish(cfg: PrimerConfig, manifest: dict[str, Any], usage: TeacherUsage, diversity: dict[str, Any],
            samples: str) -> None:
    """Prefect artifacts (no-ops outside a run): usage/cost table, diversity table, samples markdown."""
    dashboard.table("synthesize-accounting", accounting_rows(manifest["accounting"]),
                    description="Teacher tokens and USD: spent per phase and in all, reserved, budget, remaining")
    dashboard.table("synthesize-teacher-usage", usage.rows(cfg.teacher.model),
                    description="Teacher usage and cost" + (f" — stopped: {usage.stopped}" if usage.stopped else ""))
    rows = []
    for kind, rep in diversity.items():
        near = rep.get("near_duplicates")
        rows.append({"dataset": kind, "documents": rep["documents"], "distinct_1": rep["distinct_1"]["distinct"],
                     "distinct_2": rep["distinct_2"]["distinct"], "distinct_3": rep["distinct_3"]["distinct"],
                     "topic_coverage": rep["topic_coverage"], "verified": rep.get("verified", ""),
                     "near_dup_rate_generated": near["generated"]["rate"] if near else "",
                     "near_dup_rate_kept": near["kept"]["rate"] if near else ""})
    threshold = (manifest.get("diversity") or {}).get("threshold", "")
    dashboard.table("synthesize-diversity", rows, description="Distinct n-grams, topic coverage and MinHash "
                    f"near-duplicate rate (Jaccard >= {threshold}; generated = before dedup)")
    seeding = manifest.get("seeding")
    if seeding:
        dashboard.table("synthesize-seeding", [{
            "seed_source": seeding["seed_source"], "output": seeding["uri"], "dataset": seeding["dataset"],
            "seed_fraction": seeding["fraction"], "seeded_requests": seeding["requests"],
            "seeded_textbooks": seeding["textbooks"], "textbooks": manifest["datasets"]["textbooks"]["rows"]}],
            description="Textbook prompts seeded with code extracts of a curate output")
    dashboard.markdown("synthesize-samples", samples, description=f"Samples — {manifest['uri']}")
