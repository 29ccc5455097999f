"""Every collective of the training program goes through here, on the device the process group serves.

NCCL (GPUs) rejects CPU tensors, gloo (CPU) rejects CUDA tensors: a metric summed with `dist.all_reduce` on a
CPU tensor works in CPU tests and stops a GPU run at its first logged step. So the program never calls
`torch.distributed` itself; `Collectives(device)` moves each tensor to the engine's device, reduces it there
and hands back a CPU copy for logging.

`install_strict_checks()` (on when PRIMER_STRICT_COLLECTIVES=1, as the CPU test suite runs the program) wraps
torch.distributed's collectives and fails any call made from Primer's code that bypasses this module or
passes a tensor on another device than the one declared for the process group: the bug class is caught on a
CPU-only machine. DeepSpeed's own calls are not ours and pass through untouched.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any

import torch
import torch.distributed as dist

STRICT_ENV = "PRIMER_STRICT_COLLECTIVES"
_WRAPPED = ("all_reduce", "broadcast", "all_gather", "reduce", "reduce_scatter", "all_gather_into_tensor")
_state: dict[str, Any] = {"device": None, "inside": 0}


class CollectiveMisuse(RuntimeError):
    """A collective was called the way that breaks on another backend (see module docstring)."""


class Collectives:
    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        _state["device"] = self.device

    def _call(self, fn, tensor: torch.Tensor, *args, **kwargs) -> None:
        _state["inside"] += 1
        try:
            fn(tensor, *args, **kwargs)
        finally:
            _state["inside"] -= 1

    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum over ranks; returns a float64 CPU tensor (metrics only: loss sums, token counts)."""
        t = values.detach().to(self.device, dtype=torch.float64)  # NCCL and gloo both reduce float64
        self._call(dist.all_reduce, t)
        return t.cpu().double()

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        box = [obj]
        _state["inside"] += 1
        try:
            dist.broadcast_object_list(box, src=src, device=self.device)
        finally:
            _state["inside"] -= 1
        return box[0]

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, on every rank (small: part lists of a checkpoint)."""
        out: list[Any] = [None] * dist.get_world_size()
        _state["inside"] += 1
        try:
            dist.all_gather_object(out, obj)
        finally:
            _state["inside"] -= 1
        return out


def _from_primer_code(depth: int = 2) -> bool:
    frame = sys._getframe(depth)
    while frame is not None:
        spec = frame.f_globals.get("__spec__")
        # `python -m primer.training.program` runs as __main__: its spec still names the module
        module = getattr(spec, "name", None) or frame.f_globals.get("__name__", "")
        if module == __name__:
            return False
        if module.startswith(("primer.", "tasks.", "flows.")):
            return True
        if not module.startswith("torch."):
            return False
        frame = frame.f_back
    return False


def install_strict_checks() -> None:
    """Wrap torch.distributed's collectives with the checks above (idempotent)."""
    for name in _WRAPPED:
        fn = getattr(dist, name, None)
        if fn is None or getattr(fn, "_primer_checked", False):
            continue

        @functools.wraps(fn)
        def checked(*args, __fn=fn, __name=name, **kwargs):
            tensor = args[0] if args else next((kwargs[k] for k in ("tensor", "input_tensor") if k in kwargs), None)
            if _state["inside"] == 0 and _from_primer_code():
                raise CollectiveMisuse(f"torch.distributed.{__name} called directly from Primer code: use "
                                       "primer.training.collectives.Collectives (device-correct on NCCL and gloo)")
            want = _state["device"]
            if _state["inside"] and want is not None and isinstance(tensor, torch.Tensor) \
                    and tensor.device.type != want.type:
                raise CollectiveMisuse(f"torch.distributed.{__name} on a {tensor.device} tensor; the process "
                                       f"group serves {want}")
            return __fn(*args, **kwargs)

        checked._primer_checked = True  # type: ignore[attr-defined]
        setattr(dist, name, checked)


def strict_requested() -> bool:
    return os.environ.get(STRICT_ENV, "") not in ("", "0", "false")
