"""TrainSpec: what one training phase is, shared by the launcher (tasks/train) and the program on every rank.

The launcher builds it from the config and the inputs' manifests; it travels to every rank inline on the
command line (base64 JSON, see `encode`/`decode`), never as a file on the launching node, so a rank on
another node reads exactly what the launcher built. `run_key` hashes only what the run *is* (inputs' content
hashes, model, hyperparameters, world size), never where the store or the scratch directory lives: a store
copied to another root or to S3 resumes and reuses the same runs.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from primer.settings.train import PhaseConfig

TRAIN_VERSION = 2  # 2: key over content hashes + world from the launch (1 hashed the shards' URI)


@dataclass
class TrainSpec:
    phase: str
    phase_config: PhaseConfig
    model: dict[str, Any]  # model.ModelConfig.to_dict()
    shards: str  # store ref of the pack output
    shards_hash: str  # its manifest content_hash
    init_weights: str | None = None  # store ref of a model.safetensors to start from (finetune)
    init_weights_hash: str | None = None  # its sha256
    zero_stage: int = 2
    dtype: str = "fp32"
    seed: int = 1234
    world: int = 1  # ranks of the launch (nnodes x nproc, or the hostfile's slots)
    consolidate: bool = True
    activation_checkpointing: bool = False
    run_key: str = ""
    # Where things are and how the machine is used: not what the run is, so outside the key.
    store: dict[str, Any] = field(default_factory=dict)
    local_dir: str = ""
    threads_per_rank: int = 0
    peak_tflops: float = 0.0

    # Not hashed: where the inputs live (their content hashes are), where the store and scratch are, threads.
    PLACEMENT = ("run_key", "shards", "init_weights", "store", "local_dir", "threads_per_rank", "peak_tflops")

    def identity(self) -> dict[str, Any]:
        """The fields the run key hashes."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in self.PLACEMENT}

    def public(self) -> dict[str, Any]:
        """What the run's spec.json in the store records (no placement)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("store", "local_dir")}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"TrainSpec: unknown field(s) {unknown}")
        return cls(**{**d, "phase_config": PhaseConfig(**d["phase_config"])})

    def encode(self) -> str:
        """One command-line-safe token carrying the whole spec (every node's ranks get the same bytes)."""
        return base64.urlsafe_b64encode(json.dumps(self.to_dict(), sort_keys=True).encode()).decode()

    @classmethod
    def decode(cls, token: str) -> "TrainSpec":
        return cls.from_dict(json.loads(base64.urlsafe_b64decode(token.encode())))
