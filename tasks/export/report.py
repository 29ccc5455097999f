"""What the export flow publishes: the release's files and its model card."""

from __future__ import annotations

from typing import Any

from primer import dashboard
from primer.store import ArtifactStore


def publish(store: ArtifactStore, manifest: dict[str, Any]) -> None:
    out = store.read_output(manifest["uri"], "release")
    card = store.read_bytes(out.file_uri("README.md")).decode()
    files = [{"file": f["name"], "bytes": f["bytes"], "sha256": f["sha256"][:16]} for f in manifest["files"]]
    dashboard.markdown("export-summary", f"Release `{manifest['uri']}`\n\n" + dashboard.markdown_table(files)
                       + "\n---\n\n" + card, "Release files and model card")
