"""The fused LM head + cross entropy (model/loss.py) against F.linear + F.cross_entropy."""

import pytest
import torch
import torch.nn.functional as F

from model.loss import linear_cross_entropy


def _inputs(dtype=torch.float32, n=40, c=16, v=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, c, generator=g, dtype=dtype).requires_grad_()
    w = (0.5 * torch.randn(v, c, generator=g, dtype=dtype)).requires_grad_()
    b = (0.1 * torch.randn(v, generator=g, dtype=dtype)).requires_grad_()
    t = torch.randint(0, v, (n,), generator=g)
    t[::3] = -100
    return h, w, b, t


def _reference(h, w, b, t):
    return F.cross_entropy(F.linear(h, w, b).float(), t, ignore_index=-100)


@pytest.mark.parametrize("chunk_rows", [None, 7, 40, 1000])  # one chunk, several with a remainder, oversized
def test_value_and_gradients_match_linear_then_cross_entropy(chunk_rows):
    h, w, b, t = _inputs()
    ours = linear_cross_entropy(h, w, b, t, chunk_rows=chunk_rows)
    got = torch.autograd.grad(2.5 * ours, (h, w, b))  # a non-unit upstream gradient
    ref = _reference(h, w, b, t)
    want = torch.autograd.grad(2.5 * ref, (h, w, b))
    assert ours.dtype == torch.float32 and ref > 1.0
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-6)
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, atol=1e-6, rtol=1e-5)
    assert got[0][::3].abs().max() == 0  # ignored rows get no gradient


def test_gradcheck_fp64_across_chunks():
    h, w, b, t = (x.detach().double().requires_grad_() if x.is_floating_point() else x for x in _inputs(n=9, c=4, v=6))
    assert torch.autograd.gradcheck(lambda h, w, b: linear_cross_entropy(h, w, b, t, chunk_rows=4), (h, w, b))


def test_no_bias_and_batched_shapes():
    h, w, _, t = _inputs()
    ours = linear_cross_entropy(h.view(4, 10, 16), w, None, t.view(4, 10))
    torch.testing.assert_close(ours, F.cross_entropy(h @ w.t(), t), atol=1e-6, rtol=1e-6)


def test_large_losses_stay_finite_and_exact():
    """A confidently wrong model: target logits ~100 below the max, where softmax(target) underflows."""
    h, w, b, t = _inputs()
    with torch.no_grad():
        b[0] = 120.0
        t[t == 0] = 1
    ours, ref = linear_cross_entropy(h, w, b, t), _reference(h, w, b, t)
    assert ref > 90 and torch.isfinite(ours)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-6)


def test_bf16_autocast_matches_autocast_linear():
    h, w, b, t = _inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = linear_cross_entropy(h, w, b, t, chunk_rows=16)
        ref = _reference(h, w, b, t)
    got = torch.autograd.grad(ours, (h, w, b))
    want = torch.autograd.grad(ref, (h, w, b))
    assert [g.dtype for g in got] == [torch.float32] * 3  # gradients in the parameters' dtype
    # Both round bf16 GEMM outputs, blocked differently (chunks): equal to bf16 precision, not bit for bit.
    torch.testing.assert_close(ours, ref, atol=0, rtol=1e-3)
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, atol=2e-3, rtol=2e-2)


def test_bf16_weights_give_bf16_gradients():
    h, w, b, t = (x.detach().bfloat16().requires_grad_() if x.is_floating_point() else x for x in _inputs())
    ours = linear_cross_entropy(h, w, b, t)
    got = torch.autograd.grad(ours, (h, w, b))
    assert ours.dtype == torch.float32 and all(g.dtype == torch.bfloat16 for g in got)
    torch.testing.assert_close(ours, _reference(h, w, b, t), atol=1e-5, rtol=1e-5)


def test_without_grad_it_computes_only_the_loss():
    h, w, b, t = _inputs()
    with torch.no_grad():
        ours = linear_cross_entropy(h, w, b, t, chunk_rows=7)
    assert not ours.requires_grad
    torch.testing.assert_close(ours, _reference(h, w, b, t).detach(), atol=1e-6, rtol=1e-6)


def test_all_targets_ignored_is_nan_like_torch():
    h, w, b, t = _inputs()
    t[:] = -100
    assert torch.isnan(linear_cross_entropy(h, w, b, t)) and torch.isnan(_reference(h, w, b, t))


def test_row_count_mismatch_is_a_clear_error():
    h, w, b, t = _inputs()
    with pytest.raises(ValueError, match="40 hidden rows but 39 targets"):
        linear_cross_entropy(h, w, b, t[:-1])


def test_fp16_gradients_survive_a_large_mean():
    """(softmax - onehot) / n underflows in fp16 for n ~ 10^4; the 1/n must wait for the fp32 sums."""
    g = torch.Generator().manual_seed(3)
    n, c, v = 4096, 8, 512
    h = torch.randn(n, c, generator=g).half().requires_grad_()
    w = (0.1 * torch.randn(v, c, generator=g)).half().requires_grad_()
    t = torch.randint(0, v, (n,), generator=g)
    scaled = 1024.0 * linear_cross_entropy(h, w, None, t)  # as a fp16 loss scaler would
    gh, gw = torch.autograd.grad(scaled, (h, w))
    h32, w32 = h.detach().float().requires_grad_(), w.detach().float().requires_grad_()
    rh, rw = torch.autograd.grad(1024.0 * F.cross_entropy(h32 @ w32.t(), t), (h32, w32))
    assert gh.dtype == gw.dtype == torch.float16
    torch.testing.assert_close(gh.float(), rh, atol=2e-3, rtol=2e-2)
    torch.testing.assert_close(gw.float(), rw, atol=2e-3, rtol=2e-2)
    assert (gh != 0).float().mean() > 0.99  # not flushed to zero
