"""Evaluate flow: HumanEval and MBPP (test split) pass@k of a release, a checkpoint or an endpoint.

    primer evaluate --profile tiny --release <release dir or URI>
    primer evaluate --set evaluate.backend=openai --set evaluate.endpoint.base_url=http://127.0.0.1:8000/v1 \
                    --set evaluate.endpoint.model=primer-phi
    prefect deployment run 'evaluate/tiny' -p release=<release URI>

Writes per-sample results (Parquet) and a summary (JSON) to `evaluate/<key>/`, and publishes a table and a
markdown summary with pass@k next to the phi-1 paper's numbers. Returns the evaluation URI.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task

from primer import dashboard
from primer.config import load_config
from primer.export import PAPER_SCORES
from primer.secrets import install_log_redaction
from primer.settings.evaluate import EvaluateConfig
from primer.settings.store import StoreConfig
from primer.store import open_store
from tasks.evaluate import evaluate_model, read_summary


@task(name="score-benchmarks")
def score(store_cfg: StoreConfig, ev: EvaluateConfig, release: str) -> dict[str, Any]:
    logger = get_run_logger()
    progress = dashboard.Progress("evaluate-progress", "Generating and executing benchmark completions")
    manifest = evaluate_model(open_store(store_cfg), ev, release, on_progress=progress.update, log=logger.info)
    progress.done()
    return manifest


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def result_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for s in summary["runs"]:
        row = {"benchmark": s["benchmark"], "split": s["split"], "prompt_format": s["prompt_format"],
               "tasks": s["n_tasks"], "samples": s["n_samples"]}
        row.update({k: round(v, 4) for k, v in s.items() if k.startswith("pass@")})
        row["top_errors"] = ", ".join(f"{k} x{v}" for k, v in list(s["errors"].items())[:3])
        rows.append(row)
    return rows


def summary_markdown(uri: str, summary: dict[str, Any], reused: bool) -> str:
    samp = summary["sampling"]
    mode = "greedy" if samp.get("greedy") else (f"{samp['n_samples']} samples, temperature {samp['temperature']}, "
                                                 f"top-p {samp['top_p']}")
    ours: dict[str, str] = {}
    for s in summary["runs"]:
        col = "humaneval" if s["benchmark"] == "humaneval" else "mbpp"
        ours[col] = (ours[col] + " / " if col in ours else "") + f"{_pct(s.get('pass@1'))}" + \
            ("" if col == "humaneval" else f" ({s['prompt_format']})")
    limit = summary["limit"]
    lines = [f"## Evaluation{' (reused)' if reused else ''}", "",
             f"Model: `{summary['model']}`", "",
             f"Decoding: {mode}, max {samp.get('max_new_tokens')} new tokens. "
             + (f"**First {limit} problems of each benchmark only** (not comparable to full-benchmark numbers)."
                if limit else "All problems."), "",
             dashboard.markdown_table(result_rows(summary)), "",
             "### pass@1 next to the phi-1 paper", "",
             "| model | HumanEval | MBPP |", "|---|---|---|",
             f"| **this model** | {ours.get('humaneval', '—')} | {ours.get('mbpp', '—')} |"]
    lines += [f"| {r['model']} | {_pct(r['humaneval'])} | {_pct(r['mbpp'])} |" for r in PAPER_SCORES]
    lines += ["", f"Results: `{uri}/results.parquet`, summary: `{uri}/summary.json`"]
    return "\n".join(lines)


def publish(store_cfg: StoreConfig, manifest: dict[str, Any]) -> None:
    summary = read_summary(open_store(store_cfg), manifest["uri"])
    dashboard.table("evaluate-results", result_rows(summary), "pass@k per benchmark and prompt format")
    dashboard.markdown("evaluate-summary", summary_markdown(manifest["uri"], summary, manifest.get("reused", False)),
                       "pass@k next to the phi-1 paper's numbers")


@flow(name="evaluate", log_prints=True)
def evaluate(profile: str = "tiny", overrides: dict[str, Any] | None = None, release: str = "") -> str:
    """Score a model on HumanEval / MBPP. Returns the evaluation URI (evaluate/<key>).

    Args:
        profile: named profile (tiny, small, phi1).
        overrides: dotted settings, e.g. {"evaluate.limit": 0, "evaluate.n_samples": 20, "evaluate.temperature": 0.8}.
        release: a release (directory or release/<key> URI) or a checkpoint URI; empty = export this
            configuration's selected checkpoint (flows.export), or the endpoint with evaluate.backend=openai.
    """
    install_log_redaction()
    cfg = load_config(profile, overrides)
    if not release and cfg.evaluate.backend != "openai":
        from flows.export import export

        release = export(profile, overrides)
    manifest = score(cfg.store, cfg.evaluate, release)
    publish(cfg.store, manifest)
    return manifest["uri"]
