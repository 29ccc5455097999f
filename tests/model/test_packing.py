import torch
import torch.nn.functional as F

from model.attention import AttnSpec
from model.packing import block_causal_mask, cu_seqlens, doc_layout

from .helpers import EOS, doc, make_model

E = EOS


def test_layout_of_the_docstring_example():
    ids = torch.tensor([[9, 9, 9, E, 8, 8, E, 7, 7]])
    lay = doc_layout(ids, E)
    assert lay.doc_ids.tolist() == [[0, 0, 0, 0, 1, 1, 1, 2, 2]]
    assert lay.positions.tolist() == [[0, 1, 2, 3, 0, 1, 2, 0, 1]]
    cu, mx = cu_seqlens(lay.positions)
    assert cu.tolist() == [0, 4, 7, 9] and mx == 4 and cu.dtype == torch.int32


def test_layout_batch_leading_eos_and_fast_path():
    ids = torch.tensor([[E, 5, 5, 5], [5, 5, 5, 5]])
    lay = doc_layout(ids, E)
    assert lay.positions.tolist() == [[0, 0, 1, 2], [0, 1, 2, 3]]
    assert lay.doc_ids.tolist() == [[0, 1, 1, 1], [0, 0, 0, 0]]
    cu, mx = cu_seqlens(lay.positions)
    assert cu.tolist() == [0, 1, 4, 8] and mx == 4
    # No EOS, or EOS only in the last slot: one document per row -> no doc ids, no mask.
    assert doc_layout(torch.tensor([[5, 5, 5, E]]), E).doc_ids is None
    assert doc_layout(ids, E, doc_mask=False).doc_ids is None


def test_block_causal_mask_values():
    m = block_causal_mask(torch.tensor([[0, 0, 1, 1]]))[0, 0].int()
    assert m.tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]]


def test_doc_logits_do_not_depend_on_what_precedes_them():
    """Acceptance: doc B's logits are the same alone and after doc A + EOS in the same row."""
    model = make_model()
    a, b = doc(37, 1), doc(25, 2)
    with torch.no_grad():
        alone, _ = model(b[None])
        packed, _ = model(torch.cat([a, torch.tensor([E]), b])[None])
        unmasked, _ = model(torch.cat([a, torch.tensor([E]), b])[None], doc_mask=False)
    got = packed[0, len(a) + 1:]
    assert got.shape == alone[0].shape
    torch.testing.assert_close(got, alone[0], atol=1e-5, rtol=0)
    # ... and the check has teeth: without document masking the same positions differ a lot.
    assert (unmasked[0, len(a) + 1:] - alone[0]).abs().max() > 1e-2


def test_positions_restart_for_every_document_and_row():
    """Three documents at different offsets in a batch of two rows: each matches its solo forward."""
    model = make_model(seed=1)
    a, b, c = doc(10, 3), doc(20, 4), doc(15, 5)
    eos = torch.tensor([E])
    row0 = torch.cat([a, eos, b, eos, c, eos])  # 48 tokens
    row1 = torch.cat([c, eos, doc(6, 6), eos, a, eos, doc(14, 7)])  # 48 tokens
    with torch.no_grad():
        packed, _ = model(torch.stack([row0, row1]))
        solo = {k: model(v[None])[0][0] for k, v in dict(a=a, b=b, c=c).items()}
    torch.testing.assert_close(packed[0, :10], solo["a"], atol=1e-5, rtol=0)
    torch.testing.assert_close(packed[0, 11:31], solo["b"], atol=1e-5, rtol=0)
    torch.testing.assert_close(packed[0, 32:47], solo["c"], atol=1e-5, rtol=0)
    torch.testing.assert_close(packed[1, :15], solo["c"], atol=1e-5, rtol=0)
    torch.testing.assert_close(packed[1, 23:33], solo["a"], atol=1e-5, rtol=0)


def test_fast_path_equals_mask_path():
    """A row without EOS takes is_causal; forcing the explicit mask path must give the same numbers."""
    model = make_model(seed=2)
    x = torch.stack([doc(40, 8), doc(40, 9)])
    with torch.no_grad():
        fast, _ = model(x)
        mask = block_causal_mask(torch.zeros_like(x))
        slow = model.lm_head(model.hidden(x, torch.arange(40).expand(2, 40), AttnSpec(causal=False, mask=mask)))
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=0)


def test_loss_ignores_minus_100_and_trains_through_the_mask():
    model = make_model(seed=3).train()
    x = torch.cat([doc(20, 10), torch.tensor([E]), doc(11, 11)])[None]  # 32 tokens, 2 documents
    y = torch.roll(x, -1, dims=1)
    y[0, -1] = -100
    logits, loss = model(x, y)
    assert logits is None  # the fused head + loss never materialises them
    ref = F.cross_entropy(model(x)[0][0, :-1], y[0, :-1])
    torch.testing.assert_close(loss, ref)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def _reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k, dropout_p=0.0, causal=False):
    """CPU stand-in with flash_attn_varlen_func's contract: (total, H, D) in, (total, H, D) out."""
    assert causal and torch.equal(cu_q, cu_k) and cu_q.dtype == torch.int32
    out = torch.empty_like(q)
    for s, e in zip(cu_q[:-1].tolist(), cu_q[1:].tolist()):
        assert e - s <= max_q
        seg = [t[s:e].transpose(0, 1) for t in (q, k, v)]  # (H, L, D)
        out[s:e] = F.scaled_dot_product_attention(*seg, is_causal=True).transpose(0, 1)
    return out


def test_flash_varlen_path_wiring(monkeypatch):
    """The CUDA-only flash-attn branch, run on CPU with a reference kernel: same logits as the mask path."""
    import model.attention as attention
    import model.phi as phi

    model = make_model(seed=4)
    x = torch.stack([torch.cat([doc(9, 12), torch.tensor([E]), doc(22, 13)]), doc(32, 14)])
    with torch.no_grad():
        masked, _ = model(x)
        monkeypatch.setattr(attention, "flash_attn_varlen_func", _reference_varlen)
        monkeypatch.setattr(phi, "flash_varlen_usable", lambda device, dtype: True)
        positions, spec = model.attn_spec(x, doc_mask=True)
        assert spec.cu_seqlens.tolist() == [0, 10, 32, 64] and spec.mask is None
        varlen, _ = model(x)
    torch.testing.assert_close(varlen, masked, atol=1e-5, rtol=0)


def test_grad_checkpointing_gives_the_same_gradients():
    x = torch.cat([doc(20, 15), torch.tensor([E]), doc(11, 16)])[None]
    grads = []
    for ckpt in (False, True):
        model = make_model(seed=5).train()
        model.grad_checkpointing = ckpt
        _, loss = model(x, torch.roll(x, -1, 1))
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[1], grads[0], atol=1e-6, rtol=0)
