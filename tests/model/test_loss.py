import pytest
import torch
import torch.nn.functional as F

from model.loss import cross_entropy


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.bfloat16, 1e-6)])
def test_matches_torch_cross_entropy_value_and_grad(dtype, tol):
    g = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(4, 16, 50, generator=g)).to(dtype).requires_grad_()
    targets = torch.randint(0, 50, (4, 16), generator=g)
    targets[:, ::3] = -100
    ours = cross_entropy(logits, targets)
    (g_ours,) = torch.autograd.grad(2.5 * ours, logits)
    ref = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100)
    (g_ref,) = torch.autograd.grad(2.5 * ref, logits)
    assert ours.dtype == torch.float32 and g_ours.dtype == dtype
    torch.testing.assert_close(ours, ref, atol=tol, rtol=tol)
    torch.testing.assert_close(g_ours.float(), g_ref.float(), atol=tol, rtol=0)
    assert g_ours[:, ::3].abs().max() == 0  # ignored positions get no gradient
    assert ref > 1.0


def test_gradcheck_fp64():
    logits = torch.randn(6, 7, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([0, 6, -100, 3, 3, 1])
    assert torch.autograd.gradcheck(lambda x: cross_entropy(x, targets), (logits,))
