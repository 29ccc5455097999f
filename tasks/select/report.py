"""What the select flow publishes: the candidate table and the rule and reason of the choice."""

from __future__ import annotations

from typing import Any

from primer import dashboard


def candidate_rows(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    chosen = manifest["chosen"]["step"]
    return [{"step": c["step"], "mbpp_val_pass@1": c["pass@1"], "passed": f"{c['n_passed']}/{c['n_tasks']}",
             "val_loss": c.get("val_loss"), "train_loss": c.get("train_loss"), "tokens": c.get("tokens"),
             "chosen": "yes" if c["step"] == chosen else "", "checkpoint": c["uri"]} for c in manifest["candidates"]]


def publish(manifest: dict[str, Any]) -> None:
    rows = candidate_rows(manifest)
    dashboard.table("select-candidates", rows, "Checkpoints: MBPP-validation pass@1 and validation loss")
    reused = " (reused)" if manifest.get("reused") else ""
    dashboard.markdown(
        "select-summary",
        f"## Checkpoint selection{reused}\n\nRun `{manifest['run']}` — {len(rows)} checkpoints scored on MBPP "
        f"**validation** (task ids 511-600, {len(manifest['task_ids'])} tasks, `{manifest['prompt_format']}` "
        f"prompt, greedy, max {manifest['max_new_tokens']} new tokens).\n\n"
        f"**Rule** ({manifest['rule']}): {manifest['rule_text']}.\n\n**Chosen**: {manifest['reason']}\n\n"
        f"Selection: `{manifest['uri']}`\n\n" + dashboard.markdown_table(rows),
        "Checkpoint selection: candidates, rule and reason")
