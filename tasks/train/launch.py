"""Start the training program's ranks on this node, stream their events, clean up after them.

`launch` runs primer.training.program under the `deepspeed` launcher (this node, or a DeepSpeed hostfile)
or `torchrun` (this node, or one node of a torchrun-style multi-node launch: `train.nnodes`,
`train.node_rank`, `train.master_addr`/`master_port`, as Kubernetes indexed jobs and Slurm `srun` start
one launcher per node). The TrainSpec travels inline on the command line, so every node's ranks read the
same spec without any shared file. It hands each `PRIMER {...}` event to a callback, kills the whole process
group if the caller is interrupted, and removes the shared-memory buffers DeepSpeed leaves in /dev/shm.
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
from collections import deque
from pathlib import Path
from typing import Any, Callable

from primer.errors import ConfigError, PrimerError
from primer.training.spec import TrainSpec

REPO = Path(__file__).resolve().parents[2]
log = logging.getLogger("primer.train")


class TrainingFailed(PrimerError):
    """The training processes exited with an error; the message carries the tail of their output."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(spec: TrainSpec, nproc: int, launcher: str, hostfile: str = "", nnodes: int = 1,
                   node_rank: int = 0, master_addr: str = "127.0.0.1", master_port: int = 0) -> list[str]:
    """The launcher command line. A multi-node torchrun-style launch needs an agreed master port."""
    if nnodes > 1 and not master_port:
        raise ConfigError("train.master_port: a multi-node launch (train.nnodes > 1) needs a fixed port that "
                          "every node uses, e.g. --set train.master_port=29500")
    port = str(master_port or free_port())
    program = ["primer.training.program", "--spec", spec.encode()]
    if launcher == "torchrun" or nnodes > 1:  # one launcher per node: torchrun's static rendezvous
        return [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nnodes), "--node_rank",
                str(node_rank), "--nproc_per_node", str(nproc), "--master_addr", master_addr,
                "--master_port", port, "-m", *program]
    cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--master_port", port]
    cmd += ["--hostfile", hostfile, "--master_addr", master_addr] if hostfile else ["--num_gpus", str(nproc)]
    return cmd + ["--module", *program]


def launch_env(spec: TrainSpec, extra: dict[str, str] | None = None) -> dict[str, str]:
    import torch

    env = dict(os.environ)
    if not torch.cuda.is_available():
        env["DS_ACCELERATOR"] = "cpu"
    # DeepSpeed compiles its ops on first use (shm_comm ~45 s on CPU): keep them in a cache we control.
    env.setdefault("TORCH_EXTENSIONS_DIR", str(Path(".primer/torch_extensions").resolve()))
    env["OMP_NUM_THREADS"] = str(spec.threads_per_rank)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env.update(extra or {})
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


def launch(spec: TrainSpec, nproc: int, launcher: str, hostfile: str = "",
           on_event: Callable[[dict[str, Any]], None] | None = None, *, nnodes: int = 1, node_rank: int = 0,
           master_addr: str = "127.0.0.1", master_port: int = 0,
           env: dict[str, str] | None = None,
           on_start: Callable[[subprocess.Popen], None] | None = None) -> list[dict[str, Any]]:
    """Run this node's ranks to completion; return the events (rank 0's node prints them). Raises
    TrainingFailed with the output's tail. `env` adds variables for the ranks (e.g. a node's TMPDIR);
    `on_start` gets the launcher process (its own process group) as soon as it runs."""
    check_precision(spec.dtype, hostfile)
    events: list[dict[str, Any]] = []
    tail: deque[str] = deque(maxlen=40)
    stale = remove_stale_shm_buffers()
    if stale:
        log.info("removed %d shared-memory buffers left by killed training runs", len(stale))
    before = _shm_buffers()
    cmd = launch_command(spec, nproc, launcher, hostfile, nnodes, node_rank, master_addr, master_port)
    log.info("launching %d ranks on node %d/%d of run %s: %s ...", nproc, node_rank, nnodes, spec.run_key,
             " ".join(cmd[1:cmd.index("--spec")]))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=launch_env(spec, env), start_new_session=True, cwd=Path.cwd())
    if on_start:
        on_start(proc)
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
        last = f"; last event: {json.dumps(events[-1])}" if events else "; no event (it stopped before starting)"
        raise TrainingFailed(f"training exited with status {code}{last}; last output:\n" + "\n".join(tail))
    return events


def kill_tree(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal the launcher's process group and every descendant: torchrun starts its ranks in sessions of
    their own, so killing the group alone would leave them running. (psutil comes with DeepSpeed.)"""
    import psutil

    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    for p in [*children]:
        try:
            p.send_signal(sig)
        except psutil.NoSuchProcess:
            pass
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        kill_tree(proc, sig)
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue
