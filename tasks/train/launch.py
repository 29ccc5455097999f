"""Launch one training phase as real distributed processes and follow its progress.

`build_spec` turns the config + inputs into the run spec the program reads (and whose hash is the run's
key: the same spec resumes the same run, a changed knob starts a new one). `launch` starts the program on
this node under the `deepspeed` launcher or `torchrun`, streams its output, hands each `PRIMER {...}`
event to a callback, kills the whole process group if the caller is interrupted, and removes the shared
memory buffers DeepSpeed leaves in /dev/shm.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections import deque
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from primer.config import PrimerConfig
from primer.errors import ConfigError, PrimerError
from primer.shards import load_manifest
from primer.store import ArtifactStore, content_key
from primer.training.checkpoints import list_checkpoints

TRAIN_VERSION = 1
REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("primer.train")


class TrainingFailed(PrimerError):
    """The training processes exited with an error; the message carries the tail of their output."""


def model_config(cfg: PrimerConfig, shards_manifest: dict[str, Any], dropout: float) -> dict[str, Any]:
    from model import preset

    tok = shards_manifest["tokenizer"]
    overrides = {**cfg.model.overrides, "vocab_size": tok["vocab_size"], "eos_token_id": tok["eos_id"],
                 "max_seq_len": max(shards_manifest["seq_len"], cfg.model.overrides.get("max_seq_len", 0)),
                 "resid_dropout": dropout, "embd_dropout": dropout}
    try:
        return preset(cfg.model.preset, **overrides).to_dict()
    except ValueError as e:
        raise PrimerError(f"model.overrides: {e}") from None


def build_spec(cfg: PrimerConfig, store: ArtifactStore, phase: str, shards: str,
               init_weights: str | None = None) -> dict[str, Any]:
    manifest = load_manifest(store, shards)
    phase_cfg = asdict(getattr(cfg.train, phase))
    spec = {
        "phase": phase,
        "phase_config": phase_cfg,
        "model": model_config(cfg, manifest, phase_cfg["dropout"]),
        "shards": manifest["uri"],
        "shards_hash": manifest["content_hash"],
        "init_weights": init_weights,
        "zero_stage": cfg.train.zero_stage,
        "dtype": cfg.train.dtype,
        "seed": cfg.train.seed,
        "world": cfg.train.nproc,
        "consolidate": cfg.train.consolidate,
    }
    spec["run_key"] = content_key(TRAIN_VERSION, spec)
    # Where things are and how many threads is not what the run *is*: outside the key.
    spec.update(store=asdict(store.cfg), local_dir=str(Path(cfg.train.local_dir).resolve()),
                threads_per_rank=cfg.train.threads_per_rank or max(1, (os.cpu_count() or 2) // cfg.train.nproc))
    return spec


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(spec_path: Path, nproc: int, launcher: str, hostfile: str = "") -> list[str]:
    port = str(free_port())
    if launcher == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", port,
                "-m", "primer.training.program", str(spec_path)]
    cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--master_port", port]
    cmd += ["--hostfile", hostfile] if hostfile else ["--num_gpus", str(nproc)]
    return cmd + ["--module", "primer.training.program", str(spec_path)]


def launch_env(spec: dict[str, Any]) -> dict[str, str]:
    import torch

    env = dict(os.environ)
    if not torch.cuda.is_available():
        env["DS_ACCELERATOR"] = "cpu"
    # DeepSpeed compiles its ops on first use (shm_comm ~45 s on CPU): keep them in a cache we control.
    env.setdefault("TORCH_EXTENSIONS_DIR", str(Path(".primer/torch_extensions").resolve()))
    env["OMP_NUM_THREADS"] = str(spec["threads_per_rank"])
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


SHM_PATTERN = "/dev/shm/deepspeed_allreduce_buffer*"


def _shm_buffers() -> set[str]:
    return set(glob.glob(SHM_PATTERN))


def remove_stale_shm_buffers() -> list[str]:
    """Remove DeepSpeed's /dev/shm buffers that no live process maps: the leftovers of runs killed with
    SIGKILL (whose launcher could not clean up). Buffers of running trainings are mapped and kept."""
    buffers = _shm_buffers()
    if not buffers:
        return []
    in_use: set[str] = set()
    for maps in glob.glob("/proc/[0-9]*/maps"):
        try:
            with open(maps) as f:
                in_use.update(line.split(None, 5)[-1].strip() for line in f if "deepspeed_allreduce_buffer" in line)
        except OSError:  # the process ended, or is not ours to read
            continue
    stale = sorted(b for b in buffers if b not in in_use)
    for path in stale:
        Path(path).unlink(missing_ok=True)
    return stale


def check_precision(dtype: str, hostfile: str = "") -> None:
    """Fail before spawning anything when this node will train on CPU in fp16 (DeepSpeed would stop every
    rank with "Type fp16 is not supported on your device"). With a hostfile the ranks run elsewhere."""
    import torch

    if dtype == "fp16" and not hostfile and not torch.cuda.is_available():
        raise ConfigError("train.dtype=fp16: no CUDA device on this node and DeepSpeed has no fp16 on CPU; "
                          "use --set train.dtype=bf16 (or fp32) for CPU training")


def launch(spec: dict[str, Any], nproc: int, launcher: str, hostfile: str = "",
           on_event: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run the program to completion; return its events. Raises TrainingFailed with the output's tail."""
    check_precision(spec["dtype"], hostfile)
    events: list[dict[str, Any]] = []
    tail: deque[str] = deque(maxlen=40)
    stale = remove_stale_shm_buffers()
    if stale:
        log.info("removed %d shared-memory buffers left by killed training runs", len(stale))
    before = _shm_buffers()
    with tempfile.TemporaryDirectory(prefix="primer-train-") as tmp:
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        cmd = launch_command(spec_path, nproc, launcher, hostfile)
        log.info("launching %d ranks: %s", nproc, " ".join(cmd[1:]))
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=launch_env(spec), start_new_session=True, cwd=Path.cwd())
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                line = line.rstrip("\n")
                marker = line.find("PRIMER {")
                if marker >= 0:
                    event = json.loads(line[marker + len("PRIMER "):])
                    events.append(event)
                    if on_event:
                        on_event(event)
                else:
                    tail.append(line)
                    log.debug("%s", line)
            code = proc.wait()
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            for path in _shm_buffers() - before:
                Path(path).unlink(missing_ok=True)
    if code != 0:
        raise TrainingFailed(f"training exited with status {code}; last output:\n" + "\n".join(tail))
    return events


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=10)
            return
        except (ProcessLookupError, subprocess.TimeoutExpired):
            continue


def run_summary(store: ArtifactStore, spec: dict[str, Any], events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write (or read) the run manifest: every checkpoint of the run with its metrics, committed last.

    `events` (the program's step/eval/checkpoint events of the attempt that finished the run) are kept
    beside it as events.jsonl for loss curves and audits."""
    out = store.output("train", spec["run_key"])
    if out.is_complete():
        return out.read_manifest()
    checkpoints = [{k: c.get(k) for k in ("step", "uri", "weights", "train_loss", "val_loss", "tokens")}
                   for c in list_checkpoints(store, spec["run_key"])]
    public = {k: v for k, v in spec.items() if k not in ("store", "local_dir")}
    out.write_json("spec.json", public)
    with out.open_local("events.jsonl") as local:
        local.write_text("".join(json.dumps(e) + "\n" for e in events or []))
    return out.commit({"kind": "training_run", "version": TRAIN_VERSION, "phase": spec["phase"],
                       "run_key": spec["run_key"], "model": spec["model"], "inputs": {"shards": spec["shards"],
                       "shards_hash": spec["shards_hash"], "init_weights": spec["init_weights"]},
                       "checkpoints": checkpoints})
