"""Model shape and the two training phases (phi-1: pretrain on CodeTextbook, finetune on CodeExercises)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from primer.settings import knob


@dataclass
class ModelSection:
    preset: str = knob("tiny", help="Model shape preset (model/config.py).", choices=("tiny", "phi1_small", "phi1"))
    overrides: dict[str, Any] = knob(default_factory=dict, help="Override preset fields, e.g. {n_layer: 2, d_model: 64}. "
                                     "vocab_size and eos_token_id always come from the tokenizer.")

    def check(self, path: str) -> None:
        """A typo in model.overrides fails here, at config load, before curate and pack have run."""
        import dataclasses
        import difflib

        from model.config import ModelConfig
        from primer.errors import ConfigError

        names = [f.name for f in dataclasses.fields(ModelConfig)]
        for key in self.overrides:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(names)}"
                raise ConfigError(f"{path}.overrides.{key}: no such model field ({hint}; see model/config.py)")


@dataclass
class PhaseConfig:
    batch_size: int = knob(16, help="Global batch in rows per optimizer step (= micro_batch x ranks x accumulation).", min=1)
    micro_batch: int = knob(8, help="Rows per rank per forward/backward.", min=1)
    lr: float = knob(1e-3, help="Peak learning rate (AdamW).", min=0.0)
    warmup_steps: int = knob(10, help="Linear warmup steps.", min=0)
    max_steps: int = knob(60, help="Optimizer steps in this phase.", min=1)
    decay: str = knob("linear", help="After warmup: linear decay to 0 (phi-1), cosine decay to 0, or constant "
                      "(phi-1.5).", choices=("linear", "cosine", "constant"))
    weight_decay: float = knob(0.1, help="AdamW weight decay (not applied to biases and LayerNorms).", min=0.0)
    betas: list[float] = knob(default_factory=lambda: [0.9, 0.95], help="AdamW betas.")
    grad_clip: float = knob(1.0, help="Gradient-norm clipping; 0 = off.", min=0.0)
    dropout: float = knob(0.0, help="Residual and embedding dropout (phi-1: 0.1).", min=0.0, max=0.9)
    attn_dropout: float = knob(0.0, help="Dropout on the attention probabilities (phi-1: 0.1).", min=0.0, max=0.9)
    save_every: int = knob(20, help="Save (and upload) a checkpoint every N steps; the last step is always saved.", min=1)
    eval_every: int = knob(20, help="Validation loss every N steps (and at every checkpoint).", min=1)
    eval_batches: int = knob(4, help="Validation micro-batches per rank per evaluation.", min=1)
    data_order: str = knob("shuffle", help="Row order: seeded shuffle each epoch; sequential (shard order); or "
                           "curriculum (easiest rows first, by the per-row difficulty recorded at packing time).",
                           choices=("shuffle", "sequential", "curriculum"))
    loss_on: str = knob("all", help="Tokens the loss is computed on: all, or solution (prompt tokens of exercise "
                        "documents are not trained on: needs shards packed with a prompt column, e.g. from "
                        "synthesize's exercises).", choices=("all", "solution"))


@dataclass
class TrainConfig:
    nproc: int = knob(2, help="Processes on this node (CPU ranks with gloo, or GPUs with nccl).", min=1)
    launcher: str = knob("deepspeed", help="Process launcher.", choices=("deepspeed", "torchrun"))
    hostfile: str = knob("", help="DeepSpeed hostfile for multi-node runs (see infra/); empty = this node only.")
    zero_stage: int = knob(2, help="DeepSpeed ZeRO stage (0-3).", min=0, max=3)
    dtype: str = knob("fp32", help="Training precision.", choices=("fp32", "fp16", "bf16"))
    seed: int = knob(1234, help="Seed for init, data order and dropout.")
    threads_per_rank: int = knob(0, help="torch threads per CPU rank; 0 = cores / nproc.", min=0)
    shards: str = knob("", help="Token shards for pretraining (a pack output URI); empty = this config's pack output.")
    finetune_shards: str = knob("", help="Token shards of exercises for finetuning; empty = skip the finetune phase.")
    local_dir: str = knob(".primer/train", help="Local scratch for DeepSpeed checkpoints (it cannot write to s3://).")
    nnodes: int = knob(1, help="Nodes in a torchrun-style launch (Kubernetes indexed job, Slurm srun): "
                       "world size = nnodes x nproc.", min=1)
    node_rank: int = knob(0, help="This node's index in a torchrun-style launch (0 = the master).", min=0)
    master_addr: str = knob("127.0.0.1", help="Rendezvous host of a torchrun-style multi-node launch (node 0).")
    master_port: int = knob(0, help="Rendezvous port; 0 = a free port (single node only).", min=0, max=65535)
    activation_checkpointing: bool = knob(False, help="Recompute each block's activations in backward: less "
                                          "memory, ~30% more compute (long sequences, big models).")
    peak_tflops: float = knob(0.0, help="Dense bf16 peak TFLOP/s of one device for MFU; 0 = look the GPU up in "
                              "primer/training/mfu.py (CPU: no MFU).", min=0.0)
    consolidate: bool = knob(True, help="Also store fp32 consolidated weights (model.safetensors) per checkpoint.")
    pretrain: PhaseConfig = knob(default_factory=PhaseConfig, help="Pretraining phase (phi-1: batch 1024, LR 1e-3, "
                                 "750 warmup, weight decay 0.1).")
    finetune: PhaseConfig = knob(default_factory=lambda: PhaseConfig(lr=1e-4, warmup_steps=5, max_steps=20,
                                 weight_decay=0.01, save_every=10, eval_every=10),
                                 help="Finetuning phase (phi-1: batch 256, LR 1e-4, 50 warmup, weight decay 0.01).")

    def check(self, path: str) -> None:
        from primer.errors import ConfigError

        for name in ("pretrain", "finetune"):
            phase: PhaseConfig = getattr(self, name)
            # With a hostfile the world is only known at launch: the program checks it there.
            world = self.nproc * self.nnodes
            if not self.hostfile and phase.batch_size % (phase.micro_batch * world):
                raise ConfigError(f"{path}.{name}.batch_size: {phase.batch_size} is not a multiple of "
                                  f"micro_batch x world = {phase.micro_batch} x {world} (nnodes x nproc)")
        if self.finetune_shards and not self.consolidate:
            raise ConfigError(f"{path}.consolidate: false, but train.finetune_shards is set and finetuning starts "
                              "from the pretraining checkpoint's consolidated weights; set train.consolidate=true "
                              "or leave train.finetune_shards empty")
        if self.node_rank >= self.nnodes:
            raise ConfigError(f"{path}.node_rank: {self.node_rank} must be < train.nnodes={self.nnodes}")
        for name in ("pretrain", "finetune"):
            phase = getattr(self, name)
            if len(phase.betas) != 2 or not all(0 <= b < 1 for b in phase.betas):
                raise ConfigError(f"{path}.{name}.betas: expected two numbers in [0, 1), got {phase.betas}")
