"""The export stage's Prefect tasks (the one place they are declared). A release is reused through its
store key (primer/export.py), so no task result cache."""

from __future__ import annotations

from typing import Any

from prefect import task

from primer.prefect_setup import stage_task
from primer.settings.evaluate import ExportConfig
from primer.settings.store import StoreConfig
from primer.store import open_store
from tasks.export import report
from tasks.export.run import export_release


@stage_task(cache=False, name="export-release")
def export_task(store_cfg: StoreConfig, ex: ExportConfig, selection: str) -> dict[str, Any]:
    return export_release(open_store(store_cfg), ex, selection)


@task(name="publish-release")
def publish(store_cfg: StoreConfig, manifest: dict[str, Any]) -> None:
    report.publish(open_store(store_cfg), manifest)
