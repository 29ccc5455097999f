"""What the select flow publishes: the candidate table and the rule and reason of the choice."""

from __future__ import annotations

from typing import Any

from primer import dashboard


def candidate_rows(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    chosen = manifest["chosen"]["step"]
    return [{"step": c["step"], "mbpp_val_pass@1": c["pass@1"], "passed": f"{c['n_passed']}/{c['n_tasks']}" if c.get("n_tasks") else None,
             "val_loss": c.get("val_loss"), "train_loss": c.get("train_loss"), "tokens": c.get("tokens"),
             "chosen": "yes" if c["step"] == chosen else "", "checkpoint": c["uri"]} for c in manifest["candidates"]]


def publish(manifest: dict[str, Any]) -> None:
    # Without MBPP no task is scored: leave the empty score columns out and say why, not "None" and "0/0".
    rows = candidate_rows(manifest)
    empty = [c for c in ("mbpp_val_pass@1", "passed") if all(r.get(c) is None for r in rows)]
    rows = [{k: v for k, v in r.items() if k not in empty} for r in rows]
    why = (f" (no {' / '.join(empty)} column: no MBPP validation task was scored, the choice used validation loss)"
           if empty else "")
    dashboard.table("select-candidates", rows, "Checkpoints: MBPP-validation pass@1 and validation loss" + why)
    reused = " (reused)" if manifest.get("reused") else ""
    dashboard.markdown(
        "select-summary",
        f"## Checkpoint selection{reused}\n\nRun `{manifest['run']}` — {len(rows)} checkpoints scored on MBPP "
        f"**validation** (task ids 511-600, {len(manifest['task_ids'])} tasks, `{manifest['prompt_format']}` "
        f"prompt, greedy, max {manifest['max_new_tokens']} new tokens).\n\n"
        f"**Rule** ({manifest['rule']}): {manifest['rule_text']}.\n\n**Chosen**: {manifest['reason']}\n\n"
        f"Selection: `{manifest['uri']}`\n\n" + dashboard.markdown_table(rows) + (f"\n_{why.strip(' ()')}._\n" if why else ""),
        "Checkpoint selection: candidates, rule and reason")
