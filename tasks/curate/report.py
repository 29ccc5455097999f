"""What curate publishes on the Prefect dashboard (artifacts), from its manifest and classifier metrics."""

from __future__ import annotations

from typing import Any

from primer import dashboard


def publish_reused(uri: str) -> None:
    dashboard.link("curate-output", uri, "curated documents (reused)")


def publish_classifier(classifier: dict[str, Any], annotations: dict[str, Any]) -> None:
    """Held-out precision / recall / F1 per class, the confusion matrix and the label balance."""
    m = classifier["metrics"]
    dashboard.table("curate-classifier-metrics", [
        {"class": name, **{k: round(v, 4) if isinstance(v, float) else v for k, v in vals.items()}}
        for name, vals in m["per_class"].items()
    ] + [{"class": "accuracy", "precision": round(m["accuracy"], 4), "recall": "", "f1": "",
          "support": m["n_test"]}], description=f"Quality classifier ({m.get('head', 'forest')}), held-out "
                                               f"{m['n_test']} of {m['n_train'] + m['n_test']} annotations "
                                               f"({annotations['annotator']})")
    cm = m["confusion_matrix"]["rows_true_cols_pred"]
    counts = m["class_counts"]
    total = max(1, sum(counts.values()))
    mae = f" · score MAE {m['score_mae']:.2f}" if "score_mae" in m else ""
    dashboard.markdown("curate-classifier-confusion", (
        "### Quality classifier: labels and held-out confusion matrix\n\n"
        f"Label balance: {counts['educational']} educational ({100.0 * counts['educational'] / total:.0f}%), "
        f"{counts['low']} low ({100.0 * counts['low'] / total:.0f}%) by the {annotations['annotator']} "
        "annotator.\n\n| true \\ predicted | low | educational |\n"
        f"|---|---|---|\n| low | {cm[0][0]} | {cm[0][1]} |\n| educational | {cm[1][0]} | {cm[1][1]} |\n\n"
        f"precision {m['precision']:.3f} · recall {m['recall']:.3f} · F1 {m['f1']:.3f}{mae} · "
        f"classifier `{classifier['model_key']}` sha256 `{classifier['sha256'][:16]}`"
        f"{' (reused)' if classifier.get('reused') else ''}\n"))
    dashboard.table("curate-label-balance", [
        {"label": "educational", "annotations": counts["educational"]},
        {"label": "low", "annotations": counts["low"]},
        {"label": "without score", "annotations": sum(1 for r in annotations["rows"] if r["score"] is None)},
    ], description="Annotation labels (score >= curate.label_threshold = educational)")


def publish_output(uri: str, manifest: dict[str, Any]) -> None:
    funnel, drops = manifest["funnel"], manifest["drops"]
    n_in = funnel[0]["docs"] if funnel else 0
    docs = manifest["documents"]
    total_s = manifest["run"]["timings_s"].get("total", 0.0)
    dashboard.table("curate-funnel", funnel, description=f"curate {manifest['key']}: documents and bytes "
                                                         "through each step")
    dashboard.table("curate-drops", [{"reason": k, "documents": v} for k, v in drops.items()],
                    description="Excluded documents by reason (details in exclusions/)")
    dashboard.markdown("curate-summary", (
        f"### curate `{manifest['key']}`\n\n{docs} of {n_in} documents kept "
        f"({100.0 * docs / max(1, n_in):.1f}%), {len(manifest['datasets']['documents']['files'])} shards, "
        f"{total_s:.1f} s.\n\nOutput: `{uri}`\n\n" + dashboard.markdown_table(funnel)))
    dashboard.link("curate-output", uri, "curated documents")
