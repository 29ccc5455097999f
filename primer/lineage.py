"""Lineage: the run manifest that links every output of a pipeline run to its inputs by content hash.

    runs/<run_id>/manifest.json
    {"run_id", "profile", "overrides", "status",
     "stages": {"curate": {"uri", "manifest", "content_hash", "inputs": [...]}, "pack": {...}, ...},
     "external_inputs": [{"name", "uri", "fingerprint"}]}      raw sources outside the store

Every stage entry points at a stage output in the store by its store-relative ref (`pack/<key>`, so a
store copied elsewhere keeps valid lineage) and carries that output's content hash, so a reader can check
each link resolves (`verify_lineage`). A skipped stage's entry points at its small "skipped" manifest. The manifest is rewritten after
each stage, so a killed run still shows how far it got; `status` becomes "complete" at the end.
"""

from __future__ import annotations

import time
from typing import Any

from primer.errors import StoreError
from primer.store import ArtifactStore

# The DAG's order, for display (the manifest's JSON keys are sorted).
STAGE_ORDER = ("curate", "synthesize", "pack", "pack_exercises", "pretrain", "finetune", "select", "release",
               "evaluate")


def stage_entry(store: ArtifactStore, uri: str, inputs: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """A lineage entry for a finished stage output: its ref, content hash, and its inputs' refs."""
    output = store.read_output(uri)
    entry = {"uri": store.ref(output.uri), "content_hash": output.content_hash, "kind": output.kind,
             "inputs": [store.ref(store.resolve(i)) for i in inputs or []], **extra}
    if output.skipped:
        entry.update(skipped=True, reason=output.reason)
    return entry


class RunLineage:
    def __init__(self, store: ArtifactStore, run_id: str, profile: str, overrides: dict[str, Any]):
        self.store, self.run_id = store, run_id
        self.uri = store.uri("runs", run_id, "manifest.json")
        self.doc: dict[str, Any] = {"run_id": run_id, "profile": profile, "overrides": overrides,
                                    "status": "running", "started_unix": round(time.time(), 3),
                                    "stages": {}, "external_inputs": [], "notes": []}
        self.save()

    def record(self, name: str, entry: dict[str, Any]) -> None:
        self.doc["stages"][name] = entry
        self.save()

    def record_external(self, sources: list[dict[str, Any]]) -> None:
        """Raw sources live outside the store: recorded by name, URI and content fingerprint."""
        self.doc["external_inputs"] = [{"name": s["name"], "uri": s["uri"], "fingerprint": s["fingerprint"]}
                                       for s in sources]
        self.save()

    def note(self, text: str) -> None:
        self.doc["notes"].append(text)
        self.save()

    def finish(self) -> None:
        self.doc["status"] = "complete"
        self.doc["finished_unix"] = round(time.time(), 3)
        self.save()

    def save(self) -> None:
        self.store.write_json(self.uri, self.doc)


def load_lineage(store: ArtifactStore, run_id: str) -> dict[str, Any]:
    uri = store.uri("runs", run_id, "manifest.json")
    if not store.exists(uri):
        raise StoreError(f"run {run_id!r}: no lineage at {uri}; list runs under {store.uri('runs')}")
    return store.read_json(uri)


def verify_lineage(store: ArtifactStore, doc: dict[str, Any]) -> list[str]:
    """Problems found (empty = every stage's manifest exists in this store and has the recorded content hash,
    and every recorded input is another stage of the run or an external input)."""
    problems = []
    known = {e["uri"] for e in doc["stages"].values() if "uri" in e} | {e["uri"] for e in doc["external_inputs"]}
    for name, entry in doc["stages"].items():
        if "uri" not in entry:
            continue  # a skipped stage recorded by an older Primer
        try:
            actual = store.read_output(entry["uri"]).content_hash
        except StoreError:
            problems.append(f"{name}: {entry['uri']} has no manifest in {store.root}")
            continue
        if actual != entry["content_hash"]:
            problems.append(f"{name}: content hash {entry['content_hash']} != stored {actual}")
        for inp in entry.get("inputs", []):
            if inp not in known:
                problems.append(f"{name}: input {inp} is not an output of this run nor an external input")
    return problems


def render_lineage(doc: dict[str, Any]) -> str:
    lines = [f"run {doc['run_id']} ({doc['profile']}, {doc['status']})"]
    for ext in doc["external_inputs"]:
        lines.append(f"  source  {ext['name']:<12} {ext['uri']}  fingerprint {ext['fingerprint'][:16]}")
    stages = sorted(doc["stages"].items(), key=lambda kv: (STAGE_ORDER + (kv[0],)).index(kv[0]))
    for name, entry in stages:
        if "uri" not in entry or entry.get("skipped"):
            lines.append(f"  {name:<14} skipped: {entry.get('reason', '')}")
            continue
        lines.append(f"  {name:<14} {entry['uri']}  hash {str(entry['content_hash'])[:16]}")
        for inp in entry.get("inputs", []):
            lines.append(f"  {'':<14}   <- {inp}")
    for note in doc.get("notes", []):
        lines.append(f"  note: {note}")
    return "\n".join(lines)
