"""Release export (plain function; flows/export.py wraps it in Prefect). See primer/export.py."""

from __future__ import annotations

from typing import Any

from primer.errors import InputError
from primer.export import export_checkpoint
from primer.settings.evaluate import ExportConfig
from primer.store import ArtifactStore
from tasks.select.run import read_selection


def export_release(store: ArtifactStore, ex: ExportConfig, selection: str = "") -> dict[str, Any]:
    """Export `export.checkpoint`, or the checkpoint a selection chose (its scores go into the card)."""
    if ex.checkpoint:
        return export_checkpoint(store, ex.checkpoint, name=ex.name, dtype=ex.dtype)
    if not selection:
        raise InputError("export: nothing to export; pass a selection URI or set export.checkpoint")
    sel = read_selection(store, selection)
    return export_checkpoint(store, sel["chosen"]["uri"], name=ex.name, dtype=ex.dtype, selection=sel)
