"""What the evaluate flow publishes: the results table and a markdown summary next to the phi-1 paper."""

from __future__ import annotations

from typing import Any

from primer import dashboard
from primer.export import PAPER_SCORES


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def result_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for s in summary["runs"]:
        row = {"benchmark": s["benchmark"], "split": s["split"], "prompt_format": s["prompt_format"],
               "tasks": s["n_tasks"], "samples": s["n_samples"]}
        row.update({k: round(v, 4) for k, v in s.items() if k.startswith("pass@")})
        pruned = s.get("pruned")
        if pruned:
            row["pruned_tasks"] = pruned["n_tasks"]
            row.update({f"pruned_{k}": round(v, 4) for k, v in pruned.items() if k.startswith("pass@")})
        row["top_errors"] = ", ".join(f"{k} x{v}" for k, v in list(s["errors"].items())[:3])
        rows.append(row)
    return rows


def contamination_rows(report: dict[str, Any], limit: int = 50) -> list[dict[str, Any]]:
    """One row per close task (and its nearest document by each method)."""
    rows = []
    for bench, tasks in report.get("tasks", {}).items():
        for tid, entry in tasks.items():
            if not entry["close_by"]:
                continue
            row = {"benchmark": bench, "task_id": tid, "close_by": ", ".join(entry["close_by"])}
            for m in ("ngram", "ast", "embedding"):
                best = entry[m][0] if entry[m] else None
                row[m] = f"{best['score']:.3f} {best['document']}" if best else "—"
            rows.append(row)
    return rows[:limit]


def summary_markdown(uri: str, summary: dict[str, Any], reused: bool) -> str:
    samp = summary["sampling"]
    mode = "greedy" if samp.get("greedy") else (f"{samp['n_samples']} samples, temperature {samp['temperature']}, "
                                                 f"top-p {samp['top_p']}")
    ours: dict[str, str] = {}
    for s in summary["runs"]:
        col = "humaneval" if s["benchmark"].startswith("humaneval") else "mbpp"
        ours[col] = (ours[col] + " / " if col in ours else "") + f"{_pct(s.get('pass@1'))}" + \
            ("" if s["benchmark"] == "humaneval" else f" ({s['benchmark']}, {s['prompt_format']})")
    limit = summary["limit"]
    conv = summary.get("conventions", {})
    lines = [f"## Evaluation{' (reused)' if reused else ''}", "",
             f"Model: `{summary['model']}`", "",
             f"Decoding: {mode}, max {samp.get('max_new_tokens')} new tokens. "
             + (f"**First {limit} problems of each benchmark only** (not comparable to full-benchmark numbers)."
                if limit else "All problems."), "",
             "Conventions: " + ", ".join(f"{k} `{v}`" for k, v in conv.items()), "",
             dashboard.markdown_table(result_rows(summary)), "",
             "### pass@1 next to the phi-1 paper", "",
             "| model | HumanEval | MBPP |", "|---|---|---|",
             f"| **this model** | {ours.get('humaneval', '—')} | {ours.get('mbpp', '—')} |"]
    lines += [f"| {r['model']} | {_pct(r['humaneval'])} | {_pct(r['mbpp'])} |" for r in PAPER_SCORES]
    ct = summary.get("contamination") or {}
    if ct.get("reported"):
        close = ct["close_tasks"]
        lines += ["", "### Contamination", "",
                  f"{ct['documents']} training documents compared with every scored task; close (any method at its "
                  f"threshold {ct['thresholds']}): " + (", ".join(f"{b}: {len(v)}" for b, v in close.items()) or
                                                       "none") + ". Pruned scores leave those tasks out."]
    else:
        lines += ["", "No contamination report: the model's training documents could not be reached from it."]
    lines += ["", f"Results: `{uri}/results.parquet`, summary: `{uri}/summary.json`"]
    return "\n".join(lines)


def publish(summary: dict[str, Any], manifest: dict[str, Any], report: dict[str, Any] | None) -> None:
    dashboard.table("evaluate-results", result_rows(summary), "pass@k per benchmark and prompt format "
                                                              "(full and pruned)")
    if report:
        dashboard.table("evaluate-contamination", contamination_rows(report),
                        "Benchmark tasks close to a training document (left out of the pruned score)")
    dashboard.markdown("evaluate-summary", summary_markdown(manifest["uri"], summary, manifest.get("reused", False)),
                       "pass@k next to the phi-1 paper's numbers")
