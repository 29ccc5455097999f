"""Export flow: the selected checkpoint as a Hugging Face model directory, `release/<key>/`.

    primer export --profile tiny --selection <select URI>       # or --set export.checkpoint=<step URI>
    prefect deployment run 'export/tiny' -p selection=<select URI>

The release loads with `transformers` (`PhiForCausalLM.from_pretrained`, `PreTrainedTokenizerFast`) and
carries a model card with the selection's scores. Returns the release URI.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from primer.config import load_config
from primer.secrets import install_log_redaction
from tasks.export import prefect_tasks as T


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
    manifest = T.export_task(cfg.store, cfg.export, selection)
    T.publish(cfg.store, manifest)
    return manifest["uri"]
