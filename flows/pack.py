"""Pack flow: documents -> tokenizer -> EOS-delimited rows of exactly seq_len tokens -> Parquet shards.

    primer pack --profile tiny --set pack.seq_len=512
    prefect deployment run 'pack/tiny' -p overrides='{"pack.seq_len": 512}'

The source shards are tokenized in parallel on the stage's task runner, `task_runner_for("pack")`:
threads by default, or what the deployment sets in `PRIMER_PACK_TASK_RUNNER` (`processes:N`,
`dask:tcp://host:port`, ...). Rows are then cut in shard order: the same bytes whatever the runner.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, unmapped

from primer.config import PrimerConfig, load_config
from primer.prefect_setup import task_runner_for
from primer.secrets import install_log_redaction
from tasks.pack import prefect_tasks as T
from tasks.pack import report


@flow(name="pack", log_prints=True, task_runner=task_runner_for("pack"))
def pack(profile: str = "tiny", overrides: dict[str, Any] | None = None) -> str:
    """Pack document datasets into EOS-delimited token shards. Returns the shards' store URI.

    Args:
        profile: named profile (tiny, small, phi1).
        overrides: dotted settings, e.g. {"pack.seq_len": 512, "store.root": "s3://bucket/primer"}.
    """
    install_log_redaction()
    cfg: PrimerConfig = load_config(profile, overrides)
    sources = T.resolve_sources(cfg.pack.sources, cfg.store)
    tok = T.get_tokenizer(cfg.store, cfg.tokenizer, cfg.pack, sources)
    manifest = T.find_output(cfg.store, cfg.pack, tok, sources)
    if manifest is None:
        plans = T.plan_shards(sources, cfg.pack, cfg.store)
        parts = T.tokenize_shard.map(plans, unmapped(tok), unmapped(cfg.pack), unmapped(cfg.store)).result()
        manifest = T.write_output(cfg.store, cfg.pack, tok, sources, plans, parts)
    report.publish(manifest)
    sp = manifest["splits"]
    get_run_logger().info("token shards %s: %d train rows, %d val rows of %d tokens%s", manifest["uri"],
                          sp["train"]["rows"], sp["val"]["rows"], manifest["seq_len"],
                          " (reused)" if manifest.get("reused") else "")
    return manifest["uri"]
