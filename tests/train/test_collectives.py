"""The collectives checker catches, on CPU, the bug class that stops a GPU run (NCCL takes no CPU tensors)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from primer.training import collectives as C


@pytest.fixture()
def group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rdzv'}", rank=0, world_size=1)
    C.install_strict_checks()
    yield
    dist.destroy_process_group()
    C._state["device"] = None


def _legacy_metric_reduce():
    """What primer/training/program.py did before: dist.all_reduce on a fresh CPU tensor."""
    total = torch.zeros(2, dtype=torch.float64)
    dist.all_reduce(total)
    return total


def test_a_direct_collective_from_primer_code_fails_on_cpu(group):
    legacy = type(_legacy_metric_reduce)(_legacy_metric_reduce.__code__,
                                         {"__name__": "primer.training.program", "torch": torch, "dist": dist})
    with pytest.raises(C.CollectiveMisuse, match="called directly from Primer code"):
        legacy()


def test_a_tensor_on_another_device_than_the_group_serves_fails(group):
    comm = C.Collectives(torch.device("cpu"))
    C._state["device"] = torch.device("cuda")  # as on a GPU node: the NCCL group serves CUDA tensors
    with pytest.raises(C.CollectiveMisuse, match="on a cpu tensor; the process group serves cuda"):
        comm._call(dist.all_reduce, torch.zeros(1))


def test_the_helper_reduces_on_the_engine_device_and_returns_cpu_float64(group):
    comm = C.Collectives(torch.device("cpu"))
    out = comm.all_reduce_sum(torch.tensor([1.5, 2.0], dtype=torch.float32))
    assert out.dtype == torch.float64 and out.device.type == "cpu" and out.tolist() == [1.5, 2.0]
    assert comm.broadcast_object({"step": 4}) == {"step": 4}
    assert comm.gather_objects([1]) == [[1]]


def test_torch_internal_and_third_party_calls_pass_through(group):
    t = torch.ones(1)
    dist.all_reduce(t)  # from a test module: not Primer code
    assert t.item() == 1.0
