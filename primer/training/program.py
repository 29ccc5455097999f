"""The training program: one phase of DeepSpeed ZeRO training, run on every rank.

    deepspeed --num_gpus 2 --module primer.training.program --spec TOKEN      (or torchrun ... -m ...)

tasks/train/launch.py starts this on every rank with the TrainSpec inline (TOKEN = TrainSpec.encode(); no
file on the launching node, so ranks on other nodes read the same spec). The program reads token shards
from the store, resumes from the run's latest complete checkpoint in the store (if any), trains `max_steps`
optimizer steps with AdamW + warmup/decay, evaluates every `eval_every` steps, and saves a checkpoint every
`save_every` steps. Rank 0 prints one JSON object per event on stdout, prefixed by `PRIMER ` (the launcher
parses those lines); step events carry tokens/s per device and MFU.

Multi-node: every node saves its ranks' ZeRO partitions and RNG states to its own scratch directory, each
node's local rank 0 uploads them, rank 0 merges every node's file list into the checkpoint manifest and
consolidates the fp32 weights from the store (not from its own disk). Resume downloads every file listed.

Resuming is exact (fp32): the data order is a function of the step (primer/training/data.py), the optimizer
and LR-scheduler states come from the DeepSpeed checkpoint, and each rank's RNG state is saved beside it.
All collectives go through primer/training/collectives.py (on the engine's device: NCCL takes no CPU tensors).
"""

from __future__ import annotations

import faulthandler
import gc
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from model import ModelConfig, PhiLM
from primer.settings.store import StoreConfig
from primer.store import FileRecord, open_store
from primer.training import mfu
from primer.training.checkpoints import download_checkpoint, latest_checkpoint, step_name, step_output, upload_dir
from primer.training.collectives import Collectives, install_strict_checks, strict_requested
from primer.training.data import IGNORE_INDEX, RowOrder, ShardRows, eval_rows, loss_targets, micro_batch_rows
from primer.training.spec import TrainSpec


def emit(event: str, **fields: Any) -> None:
    if dist.get_rank() == 0:
        print("PRIMER " + json.dumps({"event": event, **fields}), flush=True)


def lr_lambda(phase):
    """LR factor by optimizer steps taken: linear warmup, then linear or cosine decay to 0, or constant."""
    warmup, total, decay = phase.warmup_steps, phase.max_steps, phase.decay

    def factor(step: int) -> float:  # step = number of optimizer steps taken so far
        if warmup and step < warmup:
            return (step + 1) / warmup
        if decay == "constant":
            return 1.0
        done = min(1.0, max(0.0, (step - warmup) / max(1, total - warmup)))
        if decay == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * done))
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def ds_config(spec: TrainSpec, world: int) -> dict[str, Any]:
    phase = spec.phase_config
    accum = phase.batch_size // (phase.micro_batch * world)
    return {
        "train_batch_size": phase.batch_size,
        "train_micro_batch_size_per_gpu": phase.micro_batch,
        "gradient_accumulation_steps": accum,
        "gradient_clipping": phase.grad_clip,
        "zero_optimization": {"stage": spec.zero_stage},
        "zero_allow_untested_optimizer": True,  # torch AdamW: exact resume, no JIT-compiled op needed on CPU
        "fp16": {"enabled": spec.dtype == "fp16"},
        "bf16": {"enabled": spec.dtype == "bf16"},
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
    def __init__(self, spec: TrainSpec):
        import deepspeed

        self.spec = spec
        self.phase = spec.phase_config
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        self.device = torch.device("cuda", self.local_rank) if torch.cuda.is_available() else torch.device("cpu")
        self.comm = Collectives(self.device)
        if self.world != spec.world:
            raise SystemExit(f"the launch started {self.world} ranks but the run spec was built for {spec.world} "
                             "(train.nnodes x train.nproc, or the hostfile's slots): fix the launch or the config")
        if self.phase.batch_size % (self.phase.micro_batch * self.world):
            raise SystemExit(f"train.{spec.phase}.batch_size={self.phase.batch_size} is not a multiple of "
                             f"micro_batch x world = {self.phase.micro_batch} x {self.world}")
        self.store = open_store(StoreConfig(**spec.store))
        self.run_key = spec.run_key
        self.local = Path(spec.local_dir) / self.run_key
        shards = self.store.resolve(spec.shards)
        masked = self.phase.loss_on == "solution"  # the loss skips prompt tokens: read the prompt masks too
        self.train_rows = ShardRows(self.store, shards, "train", prompt_mask=masked)
        self.val_rows = ShardRows(self.store, shards, "val", prompt_mask=masked)
        if len(self.train_rows) < self.phase.batch_size:
            raise SystemExit(f"train split of {shards} has {len(self.train_rows)} rows < batch_size "
                             f"{self.phase.batch_size}; pack more data or lower the batch size")
        self.order = RowOrder(self.train_rows, spec.seed, self.phase.data_order)

        torch.manual_seed(spec.seed)  # identical init on every rank
        cfg = ModelConfig.from_dict(spec.model)
        model = PhiLM(cfg)
        model.grad_checkpointing = spec.activation_checkpointing
        self.n_params = model.num_params()  # before ZeRO-3 partitions the parameters away
        self.flops_per_token = mfu.flops_per_token(spec.model, self.train_rows.seq_len - 1)
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        self.peak_tflops = mfu.peak_tflops(name, spec.peak_tflops)
        if spec.init_weights:
            model.load_state_dict(self._load_weights(spec.init_weights, spec.init_weights_hash))
        optimizer = torch.optim.AdamW(model.optim_groups(self.phase.weight_decay), lr=self.phase.lr,
                                      betas=tuple(self.phase.betas))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(self.phase))
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config(spec, self.world))
        self.accum = self.engine.gradient_accumulation_steps()
        self.step = 0
        torch.manual_seed(spec.seed + 1000 + self.rank)  # per-rank dropout streams

    def _load_weights(self, ref: str, sha256: str | None) -> dict[str, torch.Tensor]:
        from safetensors.torch import load as load_safetensors

        data = self.store.read_bytes(self.store.resolve(ref))
        if sha256 and hashlib.sha256(data).hexdigest() != sha256:
            raise SystemExit(f"{ref}: starting weights changed since the run spec was built (sha256 mismatch)")
        return load_safetensors(data)

    # ---------------------------------------------------------------- checkpoints
    def resume(self) -> None:
        manifest = self.comm.broadcast_object(latest_checkpoint(self.store, self.run_key) if self.rank == 0 else None)
        if manifest is None:
            return
        tag = step_name(manifest["step"])
        if self.local_rank == 0:  # one download per node: every rank's partitions and RNG states
            shutil.rmtree(self.local / tag, ignore_errors=True)
            download_checkpoint(self.store, manifest, self.local / tag)
        dist.barrier()
        self.engine.load_checkpoint(str(self.local), tag=tag)
        set_rng_state(torch.load(self.local / tag / f"rng-rank{self.rank}.pt", weights_only=False))
        self.step = manifest["step"]
        emit("resume", step=self.step, checkpoint=self.store.ref(manifest["uri"]))

    def save(self, metrics: dict[str, Any]) -> None:
        tag = step_name(self.step)
        if self.local_rank == 0:  # a killed attempt's files of this step are not this attempt's
            shutil.rmtree(self.local / tag, ignore_errors=True)
        dist.barrier()
        self.engine.save_checkpoint(str(self.local), tag=tag, client_state={"step": self.step})
        torch.save(rng_state(), self.local / tag / f"rng-rank{self.rank}.pt")
        dist.barrier()
        out = step_output(self.store, self.run_key, self.step)
        part: list[dict[str, Any]] = []
        if self.local_rank == 0:  # this node's part: the files its ranks wrote
            upload_dir(out, self.local / tag, "ds")
            part = [vars(r) for r in out.files]
        parts = self.comm.gather_objects(part)
        if self.rank == 0:
            merged = {r["name"]: r for p in parts for r in p}  # the same name twice: one shared scratch dir
            out.files = [FileRecord(**r) for _, r in sorted(merged.items())]
            weights = None
            if self.spec.consolidate:
                self._consolidate(out, tag)
                weights = self.store.ref(out.file_uri("model.safetensors"))
            manifest = out.commit({"kind": "checkpoint", "run": self.run_key, "phase": self.spec.phase,
                                   "step": self.step, "tag": tag, "zero_stage": self.spec.zero_stage,
                                   "world": self.world, "weights": weights, **metrics})
            emit("checkpoint", step=self.step, uri=self.store.ref(manifest["uri"]), **metrics)
        dist.barrier()

    def _consolidate(self, out, tag: str) -> None:
        """fp32 weights from the ZeRO partitions as the store has them (every node's), not rank 0's disk."""
        from safetensors.torch import save_file

        if self.spec.zero_stage == 0:
            state = {k: v.detach().float().cpu() for k, v in self.engine.module.state_dict().items()}
        else:
            from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

            self.local.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=self.local, prefix="consolidate-") as tmp:
                download_checkpoint(self.store, {"uri": out.uri, "files": [vars(r) for r in out.files]},
                                    Path(tmp) / tag)
                state = get_fp32_state_dict_from_zero_checkpoint(tmp, tag=tag)
        state = {k: v.contiguous() for k, v in state.items()}
        with out.open_local("model.safetensors") as local:
            save_file(state, str(local))
        with out.open_local("model_config.json") as local:
            local.write_text(json.dumps(self.spec.model, indent=2))

    def close(self) -> None:
        """Tear the engine down while the interpreter is whole. DeepSpeed turns Python's automatic GC off
        while an engine lives, so otherwise the engine, its optimizer and what gloo's worker threads
        reference are freed during interpreter shutdown, where a C++ thread that needs the GIL is made to
        exit. Our reading of two CI failures: "terminate called without an active exception" (SIGABRT)
        right after a run's checkpoints were committed."""
        self.engine.destroy()  # also gives GC back
        del self.engine, self.optimizer, self.scheduler
        gc.collect()

    # ---------------------------------------------------------------- train / eval
    def batch(self, rows: ShardRows, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(input ids, targets) of rows `idx` on the device; targets skip prompt tokens with loss_on=solution."""
        tokens = rows.batch(idx)
        targets = loss_targets(rows, idx, tokens, self.phase.loss_on)
        return (torch.from_numpy(tokens[:, :-1]).to(self.device), torch.from_numpy(targets).to(self.device))

    def evaluate(self) -> float | None:
        """Mean next-token loss over a fixed slice of the validation split (None when it is empty), over
        the tokens the training loss counts."""
        if len(self.val_rows) == 0:
            return None
        self.engine.eval()
        total = torch.zeros(2, dtype=torch.float64)
        ph = self.phase
        with torch.no_grad():
            for idx in eval_rows(self.val_rows, ph.eval_batches, ph.micro_batch, self.rank, self.world):
                x, t = self.batch(self.val_rows, idx)
                n = int((t != IGNORE_INDEX).sum())
                if n:
                    _, loss = self.engine(x, t)
                    total += torch.tensor([loss.item() * n, n], dtype=torch.float64)
        total = self.comm.all_reduce_sum(total)
        self.engine.train()
        return float(total[0] / total[1])

    def throughput(self, tokens_per_step: int, seconds: float) -> dict[str, Any]:
        per_device = tokens_per_step / seconds / self.world
        return {"tokens_per_s": tokens_per_step / seconds, "tokens_per_s_per_device": per_device,
                "mfu": mfu.mfu(per_device, self.flops_per_token, self.peak_tflops)}

    def train(self) -> None:
        self.resume()
        ph = self.phase
        if self.step == 0 and self.spec.init_weights:
            # The starting point of a finetune: the loaded weights' validation loss, before any update.
            emit("eval", step=0, val_loss=self.evaluate())
        tokens_per_step = ph.batch_size * (self.train_rows.seq_len - 1)
        last_metrics: dict[str, Any] = {}
        while self.step < ph.max_steps:
            t0 = time.perf_counter()
            lr = self.scheduler.get_last_lr()[0]  # the rate this step's update uses
            step_loss = torch.zeros(1, dtype=torch.float64)
            for m in range(self.accum):
                idx = micro_batch_rows(self.order, self.step, m, self.rank, self.world, ph.micro_batch,
                                       ph.batch_size)
                x, t = self.batch(self.train_rows, idx)
                if bool((t != IGNORE_INDEX).any()):
                    _, loss = self.engine(x, t)
                else:  # only prompt tokens (loss_on=solution): a zero loss, so every rank still runs backward
                    _, loss = self.engine(x, torch.where(t == IGNORE_INDEX, x.new_zeros(()), t))
                    loss = loss * 0.0
                self.engine.backward(loss)
                self.engine.step()
                step_loss += loss.item() / self.accum
            step_loss = self.comm.all_reduce_sum(step_loss)
            self.step += 1
            train_loss = float(step_loss[0] / self.world)
            if not math.isfinite(train_loss):
                emit("error", step=self.step, message="loss is not finite")
                raise SystemExit(f"loss became {train_loss} at step {self.step}")
            dt = time.perf_counter() - t0
            emit("step", step=self.step, loss=train_loss, lr=lr, tokens=self.step * tokens_per_step,
                 **self.throughput(tokens_per_step, dt))
            last_metrics = {"train_loss": train_loss, "tokens": self.step * tokens_per_step}
            is_last = self.step == ph.max_steps
            if self.step % ph.eval_every == 0 or self.step % ph.save_every == 0 or is_last:
                val_loss = self.evaluate()
                last_metrics["val_loss"] = val_loss
                emit("eval", step=self.step, val_loss=val_loss)
            if self.step % ph.save_every == 0 or is_last:
                self.save(last_metrics)


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory of this rank: the CUDA allocator's peak, or the process's max RSS on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def main(argv: list[str] | None = None) -> int:
    import argparse

    import deepspeed

    parser = argparse.ArgumentParser(description="One Primer training phase (see module docstring).")
    parser.add_argument("--spec", required=True, help="TrainSpec.encode() token, built by tasks/train/spec.py")
    parser.add_argument("--local_rank", type=int, default=None, help="set by the deepspeed launcher")
    args = parser.parse_args(argv)
    faulthandler.enable()  # a rank that aborts in C++ (SIGABRT, SIGSEGV) prints every thread's Python stack
    spec = TrainSpec.decode(args.spec)
    if strict_requested():
        install_strict_checks()
    if spec.threads_per_rank:
        torch.set_num_threads(spec.threads_per_rank)
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    deepspeed.init_distributed(dist_backend=backend)
    trainer = Trainer(spec)
    emit("start", run=spec.run_key, phase=spec.phase, world=trainer.world, step=0, params=trainer.n_params,
         flops_per_token=trainer.flops_per_token, peak_tflops=trainer.peak_tflops)
    trainer.train()
    peaks = trainer.comm.gather_objects(peak_memory_bytes(trainer.device))
    emit("done", step=trainer.step, peak_memory_bytes=max(peaks))
    trainer.close()
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    code = main()
    # Everything this rank made is in the store and its events are printed: skip interpreter shutdown,
    # whose teardown of C++ threads (gloo, DeepSpeed's ops) can abort a finished run (see Trainer.close).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
