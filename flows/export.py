"""Export flow: the selected checkpoint as a Hugging Face model directory, `release/<key>/`.

    primer export --profile tiny --selection <select URI>       # or --set export.checkpoint=<step URI>
    prefect deployment run 'export/tiny' -p selection=<select URI>

The release loads with `transformers` (`PhiForCausalLM.from_pretrained`, `PreTrainedTokenizerFast`) and
carries a model card with the selection's scores. Returns the release URI.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task

from primer import dashboard
from primer.config import load_config
from primer.secrets import install_log_redaction
from primer.settings.evaluate import ExportConfig
from primer.settings.store import StoreConfig
from primer.store import open_store
from tasks.export import export_release


@task(name="export-release")
def export_task(store_cfg: StoreConfig, ex: ExportConfig, selection: str) -> dict[str, Any]:
    return export_release(open_store(store_cfg), ex, selection)


def publish(store_cfg: StoreConfig, manifest: dict[str, Any]) -> None:
    store = open_store(store_cfg)
    card = store.read_bytes(f"{manifest['uri']}/README.md").decode()
    files = [{"file": f["name"], "bytes": f["bytes"], "sha256": f["sha256"][:16]} for f in manifest["files"]]
    dashboard.markdown("export-summary", f"Release `{manifest['uri']}`\n\n" + dashboard.markdown_table(files)
                       + "\n---\n\n" + card, "Release files and model card")


@flow(name="export", log_prints=True)
def export(profile: str = "tiny", overrides: dict[str, Any] | None = None, selection: str = "") -> str:
    """Write (or reuse) a release. Returns its URI (release/<key>).

    Args:
        profile: named profile (tiny, small, phi1).
        overrides: dotted settings, e.g. {"export.dtype": "bf16"} or {"export.checkpoint": "<step URI>"}.
        selection: a selection URI (select/<key>); empty (and no export.checkpoint) = run the select flow.
    """
    install_log_redaction()
    cfg = load_config(profile, overrides)
    if not selection and not cfg.export.checkpoint:
        from flows.select import select

        selection = select(profile, overrides)
    manifest = export_task(cfg.store, cfg.export, selection)
    publish(cfg.store, manifest)
    return manifest["uri"]
