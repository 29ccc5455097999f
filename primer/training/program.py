"""The training program: one phase of DeepSpeed ZeRO training, run on every rank.

    deepspeed --num_gpus 2 --module primer.training.program RUN_SPEC.json     (or torchrun -m ...)

The flow (flows/train.py) writes RUN_SPEC.json and launches this on every rank. The program reads token
shards from the store, resumes from the run's latest complete checkpoint in the store (if any), trains
`max_steps` optimizer steps with AdamW + warmup/decay, evaluates every `eval_every` steps, saves and uploads
a checkpoint every `save_every` steps, and writes the run manifest at the end. Rank 0 prints one JSON
object per event on stdout, prefixed by `PRIMER ` (the flow parses those lines).

Resuming is exact (fp32): the data order is a function of the step (primer/training/data.py), the optimizer
and LR-scheduler states come from the DeepSpeed checkpoint, and each rank's RNG state is saved beside it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from model import ModelConfig, PhiLM
from primer.settings.store import StoreConfig
from primer.store import open_store
from primer.training.checkpoints import download_checkpoint, latest_checkpoint, step_name, step_output, upload_dir
from primer.training.data import RowOrder, ShardRows, eval_batches, micro_batch


def emit(event: str, **fields: Any) -> None:
    if dist.get_rank() == 0:
        print("PRIMER " + json.dumps({"event": event, **fields}), flush=True)


def lr_lambda(phase: dict[str, Any]):
    warmup, total, decay = phase["warmup_steps"], phase["max_steps"], phase["decay"]

    def factor(step: int) -> float:  # step = number of optimizer steps taken so far
        if warmup and step < warmup:
            return (step + 1) / warmup
        if decay == "constant":
            return 1.0
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def ds_config(spec: dict[str, Any], world: int) -> dict[str, Any]:
    phase = spec["phase_config"]
    accum = phase["batch_size"] // (phase["micro_batch"] * world)
    return {
        "train_batch_size": phase["batch_size"],
        "train_micro_batch_size_per_gpu": phase["micro_batch"],
        "gradient_accumulation_steps": accum,
        "gradient_clipping": phase["grad_clip"],
        "zero_optimization": {"stage": spec["zero_stage"]},
        "zero_allow_untested_optimizer": True,  # torch AdamW: exact resume, no JIT-compiled op needed on CPU
        "fp16": {"enabled": spec["dtype"] == "fp16"},
        "bf16": {"enabled": spec["dtype"] == "bf16"},
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


class Trainer:
    def __init__(self, spec: dict[str, Any]):
        import deepspeed

        self.spec = spec
        self.phase = spec["phase_config"]
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        self.device = torch.device("cuda", self.local_rank) if torch.cuda.is_available() else torch.device("cpu")
        self.store = open_store(StoreConfig(**spec["store"]))
        self.run_key = spec["run_key"]
        self.local = Path(spec["local_dir"]) / self.run_key
        self.train_rows = ShardRows(self.store, spec["shards"], "train")
        self.val_rows = ShardRows(self.store, spec["shards"], "val")
        if len(self.train_rows) < self.phase["batch_size"]:
            raise SystemExit(f"train split of {spec['shards']} has {len(self.train_rows)} rows < batch_size "
                             f"{self.phase['batch_size']}; pack more data or lower the batch size")
        self.order = RowOrder(self.train_rows, spec["seed"], self.phase["data_order"])

        torch.manual_seed(spec["seed"])  # identical init on every rank
        cfg = ModelConfig.from_dict(spec["model"])
        model = PhiLM(cfg)
        self.n_params = model.num_params()  # before ZeRO-3 partitions the parameters away
        if spec.get("init_weights"):
            model.load_state_dict(self._load_weights(spec["init_weights"]))
        optimizer = torch.optim.AdamW(model.optim_groups(self.phase["weight_decay"]), lr=self.phase["lr"],
                                      betas=tuple(self.phase["betas"]))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(self.phase))
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config(spec, self.world))
        self.accum = self.engine.gradient_accumulation_steps()
        self.step = 0
        torch.manual_seed(spec["seed"] + 1000 + self.rank)  # per-rank dropout streams

    def _load_weights(self, uri: str) -> dict[str, torch.Tensor]:
        from safetensors.torch import load as load_safetensors

        return load_safetensors(self.store.read_bytes(uri))

    # ---------------------------------------------------------------- checkpoints
    def resume(self) -> None:
        latest = [latest_checkpoint(self.store, self.run_key) if self.rank == 0 else None]
        dist.broadcast_object_list(latest, src=0)
        manifest = latest[0]
        if manifest is None:
            return
        tag = step_name(manifest["step"])
        if self.local_rank == 0:
            shutil.rmtree(self.local / tag, ignore_errors=True)
            download_checkpoint(self.store, manifest, self.local / tag)
        dist.barrier()
        self.engine.load_checkpoint(str(self.local), tag=tag)
        set_rng_state(torch.load(self.local / tag / f"rng-rank{self.rank}.pt", weights_only=False))
        self.step = manifest["step"]
        emit("resume", step=self.step, checkpoint=manifest["uri"])

    def save(self, metrics: dict[str, Any]) -> None:
        tag = step_name(self.step)
        self.engine.save_checkpoint(str(self.local), tag=tag, client_state={"step": self.step})
        torch.save(rng_state(), self.local / tag / f"rng-rank{self.rank}.pt")
        dist.barrier()
        out = step_output(self.store, self.run_key, self.step)
        if self.local_rank == 0:
            upload_dir(out, self.local / tag, "ds")
        if self.rank == 0 and self.spec.get("consolidate", True):
            self._consolidate(out, tag)
        dist.barrier()
        if self.rank == 0:
            manifest = out.commit({"kind": "checkpoint", "run": self.run_key, "phase": self.spec["phase"],
                                   "step": self.step, "tag": tag, "zero_stage": self.spec["zero_stage"],
                                   "weights": out.file_uri("model.safetensors") if self.spec.get("consolidate", True) else None,
                                   **metrics})
            emit("checkpoint", step=self.step, uri=manifest["uri"], **metrics)
        dist.barrier()

    def _consolidate(self, out, tag: str) -> None:
        """fp32 weights from the ZeRO partitions (single node: every partition file is local)."""
        from safetensors.torch import save_file

        if self.spec["zero_stage"] == 0:
            state = {k: v.detach().float().cpu() for k, v in self.engine.module.state_dict().items()}
        else:
            from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

            state = get_fp32_state_dict_from_zero_checkpoint(str(self.local), tag=tag)
        state = {k: v.contiguous() for k, v in state.items()}
        with out.open_local("model.safetensors") as local:
            save_file(state, str(local))
        with out.open_local("model_config.json") as local:
            local.write_text(json.dumps(self.spec["model"], indent=2))

    # ---------------------------------------------------------------- train / eval
    def evaluate(self) -> float | None:
        """Mean next-token loss over a fixed slice of the validation split (None when it is empty)."""
        if len(self.val_rows) == 0:
            return None
        self.engine.eval()
        total = torch.zeros(2, dtype=torch.float64)
        with torch.no_grad():
            for batch in eval_batches(self.val_rows, self.phase["eval_batches"], self.phase["micro_batch"],
                                      self.rank, self.world):
                x = torch.from_numpy(batch).to(self.device)
                _, loss = self.engine(x[:, :-1], x[:, 1:])
                total += torch.tensor([loss.item() * x[:, 1:].numel(), x[:, 1:].numel()], dtype=torch.float64)
        dist.all_reduce(total)
        self.engine.train()
        return float(total[0] / total[1])

    def train(self) -> None:
        self.resume()
        ph = self.phase
        if self.step == 0 and self.spec.get("init_weights"):
            # The starting point of a finetune: the loaded weights' validation loss, before any update.
            emit("eval", step=0, val_loss=self.evaluate())
        tokens_per_step = ph["batch_size"] * (self.train_rows.seq_len - 1)
        last_metrics: dict[str, Any] = {}
        while self.step < ph["max_steps"]:
            t0 = time.perf_counter()
            lr = self.scheduler.get_last_lr()[0]  # the rate this step's update uses
            step_loss = torch.zeros(1, dtype=torch.float64)
            for m in range(self.accum):
                batch = micro_batch(self.train_rows, self.order, self.step, m, self.rank, self.world,
                                    ph["micro_batch"], ph["batch_size"])
                x = torch.from_numpy(batch).to(self.device)
                _, loss = self.engine(x[:, :-1], x[:, 1:])
                self.engine.backward(loss)
                self.engine.step()
                step_loss += loss.item() / self.accum
            dist.all_reduce(step_loss)
            self.step += 1
            train_loss = float(step_loss[0] / self.world)
            if not math.isfinite(train_loss):
                emit("error", step=self.step, message="loss is not finite")
                raise SystemExit(f"loss became {train_loss} at step {self.step}")
            dt = time.perf_counter() - t0
            emit("step", step=self.step, loss=train_loss, lr=lr,
                 tokens=self.step * tokens_per_step, tokens_per_s=tokens_per_step / dt)
            last_metrics = {"train_loss": train_loss, "tokens": self.step * tokens_per_step}
            is_last = self.step == ph["max_steps"]
            if self.step % ph["eval_every"] == 0 or self.step % ph["save_every"] == 0 or is_last:
                val_loss = self.evaluate()
                last_metrics["val_loss"] = val_loss
                emit("eval", step=self.step, val_loss=val_loss)
            if self.step % ph["save_every"] == 0 or is_last:
                self.save(last_metrics)


def main(argv: list[str] | None = None) -> int:
    import deepspeed

    import argparse

    parser = argparse.ArgumentParser(description="One Primer training phase (see module docstring).")
    parser.add_argument("spec", help="run spec JSON written by flows/train.py")
    parser.add_argument("--local_rank", type=int, default=None, help="set by the deepspeed launcher")
    args = parser.parse_args(argv)
    spec = json.loads(Path(args.spec).read_text())
    if spec.get("threads_per_rank"):
        torch.set_num_threads(spec["threads_per_rank"])
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    deepspeed.init_distributed(dist_backend=backend)
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    trainer = Trainer(spec)
    emit("start", run=spec["run_key"], phase=spec["phase"], world=trainer.world, step=0,
         params=trainer.n_params)
    trainer.train()
    emit("done", step=trainer.step)
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
