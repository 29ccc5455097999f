"""Train flow: DeepSpeed ZeRO pretraining on token shards, then (optionally) finetuning on exercise shards.

    primer train --profile tiny --set train.zero_stage=3
    prefect deployment run 'train/tiny'

Each phase is a run keyed by its spec (model, data content, hyperparameters, init weights, world size):
re-running resumes from the latest checkpoint in the store, or reuses a finished run. Finetuning starts from
the pretraining checkpoint with the lowest validation loss, with a fresh optimizer and its own schedule
(phi-1). The units are in tasks/train/, the Prefect tasks in tasks/train/prefect_tasks.py.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from primer.config import PrimerConfig, load_config
from primer.secrets import install_log_redaction
from tasks.train import prefect_tasks as T
from tasks.train.summary import best_checkpoint, finetune_start

__all__ = ["best_checkpoint", "train"]  # best_checkpoint: read by flows/ablation.py


@flow(name="train", log_prints=True)
def train(profile: str = "tiny", overrides: dict[str, Any] | None = None) -> str:
    """Pretrain (and finetune, when train.finetune_shards is set). Returns the last phase's run URI.

    Args:
        profile: named profile (tiny, small, phi1).
        overrides: dotted settings, e.g. {"train.zero_stage": 3, "train.pretrain.max_steps": 200}.
    """
    install_log_redaction()
    cfg: PrimerConfig = load_config(profile, overrides)
    shards = cfg.train.shards
    if not shards:
        from flows.pack import pack

        shards = pack(profile, overrides)
    pre = T.train_phase(cfg, "pretrain", shards)
    master = cfg.train.node_rank == 0  # in a multi-node launch only the master node publishes
    if master and not pre["reused"]:
        T.publish(cfg.store, pre, "pretrain")
    if not cfg.train.finetune_shards:
        return pre["uri"]
    start = finetune_start(pre)
    get_run_logger().info("finetuning from pretraining step %d (val loss %.4f)", start["step"], start["val_loss"])
    ft = T.train_phase(cfg, "finetune", cfg.train.finetune_shards, start["weights"])
    if master and not ft["reused"]:
        T.publish(cfg.store, ft, "finetune")
    return ft["uri"]
