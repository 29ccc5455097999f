"""The pipeline run's own page: one markdown artifact that tells the whole story of a run.

The stage flows publish their details on their own (subflow) runs; a person opening the *pipeline* run
should not have to hunt for them. `publish_run_page(store, lineage_doc)` (called once, at the end of the
pipeline flow) reads every stage output of the run from its manifest and publishes `pipeline-summary`:

    stages      each stage's output (store-relative ref), content hash and a link to its subflow run
    funnel      curate's documents/bytes through each step, and the drops by reason
    teacher     synthesize's teacher usage and cost, or "no teacher" with the reason
    training    the loss curve picture(s) and every checkpoint with its losses
    selection   the checkpoint chosen and why; scores per checkpoint
    scores      evaluate's pass@k per benchmark
    lineage     every output with the outputs it was made from, store-relative; raw sources by fingerprint

Tables never show a column that is empty everywhere: it is left out and a line under the table says which
column and why (e.g. no MBPP validation score when MBPP was not available). `build_run_page` is pure (store
reads only) so it is tested without Prefect; links to subflow runs come from the Prefect API when in a run.
"""

from __future__ import annotations

import base64
import logging
from typing import Any, Callable

from primer import dashboard
from primer.lineage import STAGE_ORDER
from primer.store import ArtifactStore

log = logging.getLogger("primer")

SUMMARY_KEY = "pipeline-summary"
# lineage stage -> the flow whose subflow run made it (for links)
STAGE_FLOW = {"curate": "curate", "synthesize": "synthesize", "pack": "pack", "pack_exercises": "pack",
              "pretrain": "train", "finetune": "train", "select": "select", "release": "export",
              "evaluate": "evaluate"}


# ------------------------------------------------------------------------------------ tables


def drop_empty_columns(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows without the columns that hold no value in any row (None or ""), and those columns' names."""
    if not rows:
        return rows, []
    cols = list(dict.fromkeys(k for r in rows for k in r))
    empty = [c for c in cols if all(r.get(c) in (None, "") for r in rows)]
    return [{k: v for k, v in r.items() if k not in empty} for r in rows], empty


def table(rows: list[dict[str, Any]], why_empty: dict[str, str] | None = None) -> str:
    """A markdown table; columns empty in every row are left out with one line saying why."""
    kept, empty = drop_empty_columns(rows)
    out = dashboard.markdown_table(kept)
    for col in empty:
        reason = (why_empty or {}).get(col, "no value in any row")
        out += f"\n_Column `{col}` left out: {reason}._\n"
    return out


def _fmt(x: Any, digits: int = 4) -> Any:
    return round(x, digits) if isinstance(x, float) else x


# ------------------------------------------------------------------------------------ sections


def _read(store: ArtifactStore, entry: dict[str, Any] | None):
    if not entry or "uri" not in entry:
        return None
    try:
        return store.read_output(entry["uri"])
    except Exception as e:  # a page is a report: one unreadable output must not hide the others
        log.warning("run page: cannot read %s: %s", entry.get("uri"), e)
        return None


def stages_section(doc: dict[str, Any], links: dict[str, str]) -> str:
    rows = []
    for name in _ordered(doc["stages"]):
        entry = doc["stages"][name]
        run = links.get(name, "")
        # the skip reason is spelled out in its own section: a long one here would push the links off the page
        rows.append({"stage": name, "flow run": f"[{STAGE_FLOW.get(name, name)}]({run})" if run else "",
                     "output": "skipped (see below)" if entry.get("skipped") else f"`{entry['uri']}`",
                     "content hash": str(entry.get("content_hash", ""))[:12]})
    return "## Stages\n\n" + table(rows, {"flow run": "not published from a Prefect run"})


def funnel_section(store: ArtifactStore, doc: dict[str, Any]) -> str:
    out = _read(store, doc["stages"].get("curate"))
    if out is None:
        return ""
    m = out.manifest
    first = ("step", "docs", "bytes", "dropped", "kept_pct")  # manifests store keys sorted; read in this order
    funnel = [{k: _fmt(step[k]) for k in sorted(step, key=lambda k: (first + (k,)).index(k))}
              for step in m.get("funnel", [])]
    text = "## Curation funnel\n\n" + (table(funnel) if funnel else "_curate recorded no funnel._\n")
    drops = m.get("drops") or {}
    if drops:
        text += "\nDropped: " + ", ".join(f"{k} {v}" for k, v in drops.items()) + "\n"
    return text


def teacher_section(store: ArtifactStore, doc: dict[str, Any]) -> str:
    entry = doc["stages"].get("synthesize")
    notes = [n for n in doc.get("notes", []) if "teacher" in n]
    if entry is None or entry.get("skipped"):
        reason = (entry or {}).get("reason") or (notes[0] if notes else "synthesize did not run")
        return f"## Teacher\n\n**No teacher**: {reason}. Pretraining used curated code only; no finetuning.\n"
    out = _read(store, entry)
    usage = (out.manifest.get("teacher_usage") if out else None) or {}
    if not usage:
        return "## Teacher\n\n_synthesize recorded no teacher usage._\n"
    rows = [{"metric": k, "value": _fmt(v, 6) if v is not None else "unknown price" if "cost" in k else ""}
            for k, v in usage.items()]
    return "## Teacher usage and cost\n\n" + table(rows)


def _png_uri(store: ArtifactStore, run_uri: str) -> str | None:
    path = store.resolve(run_uri).rstrip("/") + "/loss.png"
    try:
        if store.exists(path):
            return "data:image/png;base64," + base64.b64encode(store.read_bytes(path)).decode()
    except Exception:
        pass
    return None


def training_section(store: ArtifactStore, doc: dict[str, Any]) -> str:
    parts = []
    for phase in ("pretrain", "finetune"):
        out = _read(store, doc["stages"].get(phase))
        if out is None:
            continue
        m = out.manifest
        parts.append(f"### {phase} `{store.ref(out.uri)}`\n")
        png = _png_uri(store, out.uri)
        parts.append(f"![{phase} loss curve]({png})\n" if png else "_no loss curve picture in the store._\n")
        rows = [{"step": c.get("step"), "train_loss": _fmt(c.get("train_loss")), "val_loss": _fmt(c.get("val_loss")),
                 "tokens": c.get("tokens"), "checkpoint": f"`{store.ref(store.resolve(c['uri']))}`" if c.get("uri") else ""}
                for c in m.get("checkpoints", [])]
        parts.append(table(rows, {"val_loss": "no validation split (pack.val_fraction = 0)"}))
    return "## Training\n\n" + "\n".join(parts) if parts else ""


def selection_section(store: ArtifactStore, doc: dict[str, Any]) -> str:
    out = _read(store, doc["stages"].get("select"))
    if out is None:
        return ""
    m = out.manifest
    chosen = (m.get("chosen") or {}).get("step")
    rows = [{"step": c.get("step"), "mbpp_val_pass@1": _fmt(c.get("pass@1")),
             "passed": f"{c['n_passed']}/{c['n_tasks']}" if c.get("n_tasks") else None,
             "val_loss": _fmt(c.get("val_loss")), "chosen": "yes" if c.get("step") == chosen else ""}
            for c in m.get("candidates", [])]
    why = "no MBPP validation tasks were scored (MBPP not available): the choice falls back to validation loss"
    text = "## Checkpoint selection\n\n"
    if m.get("reason"):
        text += f"**Chosen**: {m['reason']}\n\n"
    return text + table(rows, {"mbpp_val_pass@1": why, "passed": why})


def scores_section(store: ArtifactStore, doc: dict[str, Any]) -> str:
    out = _read(store, doc["stages"].get("evaluate"))
    if out is None:
        return ""
    summary = out.manifest.get("summary")
    if summary is None and "summary.json" in out.file_names():
        summary = store.read_json(out.file_uri("summary.json"))
    runs = (summary or {}).get("runs", [])
    rows = []
    for s in runs:
        row = {"benchmark": s.get("benchmark"), "split": s.get("split"), "prompt": s.get("prompt_format"),
               "tasks": s.get("n_tasks")}
        row.update({k: _fmt(v) for k, v in s.items() if k.startswith("pass@")})
        rows.append(row)
    limit = (summary or {}).get("limit")
    head = "## Scores\n\n" + (f"_First {limit} problems of each benchmark only: not comparable to full-benchmark "
                              "numbers._\n\n" if limit else "")
    return head + (table(rows) if rows else "_evaluate recorded no scores._\n")


def lineage_section(doc: dict[str, Any]) -> str:
    rows = []
    for name in _ordered(doc["stages"]):
        entry = doc["stages"][name]
        if entry.get("skipped") or "uri" not in entry:
            continue
        rows.append({"stage": name, "output": f"`{entry['uri']}`",
                     "made from": "<br>".join(f"`{i}`" for i in entry.get("inputs", [])) or "raw sources"})
    text = "## Lineage (store-relative)\n\n" + table(rows)
    ext = [{"source": e.get("name"), "uri": f"`{e.get('uri')}`", "fingerprint": str(e.get("fingerprint", ""))[:16]}
           for e in doc.get("external_inputs", [])]
    if ext:
        text += "\nRaw sources (outside the store, by content fingerprint):\n\n" + table(ext)
    for note in doc.get("notes", []):
        text += f"\n- note: {note}"
    return text + "\n"


def _ordered(stages: dict[str, Any]) -> list[str]:
    return sorted(stages, key=lambda n: (STAGE_ORDER + (n,)).index(n))


def build_run_page(store: ArtifactStore, doc: dict[str, Any], links: dict[str, str] | None = None) -> str:
    """The whole page as markdown (pure: reads the store only)."""
    links = links or {}
    head = (f"# Pipeline run `{doc['run_id']}`\n\nProfile `{doc.get('profile')}` · status **{doc.get('status')}** · "
            f"lineage `runs/{doc['run_id']}/manifest.json` (`primer lineage {doc['run_id']}`)\n")
    sections: list[Callable[[], str]] = [
        lambda: stages_section(doc, links), lambda: funnel_section(store, doc), lambda: teacher_section(store, doc),
        lambda: training_section(store, doc), lambda: selection_section(store, doc),
        lambda: scores_section(store, doc), lambda: lineage_section(doc)]
    parts = [head]
    for make in sections:
        try:
            text = make()
        except Exception as e:  # one malformed manifest must not cost the whole page
            log.warning("run page: a section failed: %s", e)
            text = f"_section unavailable: {e}_\n"
        if text:
            parts.append(text)
    return "\n".join(parts)


# ------------------------------------------------------------------------------------ Prefect


def subflow_links() -> dict[str, str]:
    """lineage stage -> UI link of the subflow run that made it, for the current pipeline flow run.

    Stages run in DAG order, so the n-th run of a flow (by start time) is the n-th stage of that flow."""
    try:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
        from prefect.runtime import flow_run
        from prefect.settings import PREFECT_UI_URL

        parent = flow_run.get_id()
        if not parent:
            return {}
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent])))
            names = {fid: client.read_flow(fid).name for fid in {r.flow_id for r in runs}}
        base = (PREFECT_UI_URL.value() or "").rstrip("/")
        by_flow: dict[str, list[str]] = {}
        for r in sorted(runs, key=lambda r: (r.start_time or r.expected_start_time or r.created).timestamp()):
            by_flow.setdefault(names[r.flow_id], []).append(f"{base}/runs/flow-run/{r.id}")
        links: dict[str, str] = {}
        for stage in STAGE_ORDER:
            flow_name = STAGE_FLOW[stage]
            if by_flow.get(flow_name):
                links[stage] = by_flow[flow_name].pop(0)
        if "pretrain" in links:  # one train subflow runs both phases
            links.setdefault("finetune", links["pretrain"])
        return links
    except Exception as e:
        log.warning("run page: no subflow links (%s)", e)
        return {}


def publish_run_page(store: ArtifactStore, doc: dict[str, Any]) -> str:
    """Build the page and publish it on the current flow run (a no-op outside a run). Returns the markdown."""
    page = build_run_page(store, doc, subflow_links() if dashboard.in_run() else {})
    dashboard.markdown(SUMMARY_KEY, page, "The whole run: funnel, teacher, loss curve, checkpoints, scores, lineage")
    return page
